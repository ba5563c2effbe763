"""``fcgrad.testing`` is ``crosscheck.testing`` itself (same module object): the pytest helper
``assert_backward_matches`` that holds a hand-written backward to JAX's autodiff of its forward.

    from fcgrad.testing import assert_backward_matches
"""

import sys

import crosscheck.testing

sys.modules[__name__] = crosscheck.testing
