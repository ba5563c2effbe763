"""``fcgrad.manual`` is the top-level ``manual`` package itself (same module object), so that
``import fcgrad.manual`` and ``from fcgrad.manual import ...`` work as well as ``import manual``.
"""

import sys

import manual

sys.modules[__name__] = manual
