"""``fcgrad.reference`` is the top-level ``reference`` package itself (same module object), so that
``import fcgrad.reference`` and ``from fcgrad.reference import ...`` work as well as ``import reference``.
"""

import sys

import reference

sys.modules[__name__] = reference
