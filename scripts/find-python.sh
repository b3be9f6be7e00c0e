#!/usr/bin/env sh
# Print the path of a Python >= 3.12 interpreter, or fail with a clear message.
# Order: $PYTHON, python3.12 / python3.13 / python3 on PATH, then pyenv-installed versions (3.12 first).
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for candidate in ${PYTHON:-} python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && ok "$candidate"; then
        command -v "$candidate"
        exit 0
    fi
done
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for version in $(pyenv versions --bare 2>/dev/null | grep "^3\.12"; pyenv versions --bare 2>/dev/null | sort -r -V); do
        candidate="$root/versions/$version/bin/python"
        if [ -x "$candidate" ] && ok "$candidate"; then
            echo "$candidate"
            exit 0
        fi
    done
fi
echo "error: crowdbayes needs Python >= 3.12; install it or set PYTHON=/path/to/python3.12" >&2
exit 1
