"""The fast path: numba kernels behind PyTensor's own seams, never mentioned by the models.

- :mod:`crowdbayes.fast.rewrites`: under the numba backend, the confusion-matrix models'
  likelihood and its gradient (a reference PyTensor graph) become one fused kernel
  (:mod:`crowdbayes.fast.kernels`). ``import crowdbayes`` registers the rewrite.
- :mod:`crowdbayes.fast.transforms`: the stick-breaking simplex transform, with numba and JAX
  implementations of its log-Jacobian.
- :mod:`crowdbayes.fast.nutpie`: nutpie's compile of a PyMC model with its constants lifted to
  inputs, so the compiled log-density is cached on disk and reused for any data.
- :mod:`crowdbayes.fast.draws`: label posteriors of confusion-matrix models evaluated on stored
  draws.
- :mod:`crowdbayes.fast.codegen`: generated kernels and their cache keys.
"""
