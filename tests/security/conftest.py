"""The security tests run at every level: pure ones (unit), the in-process services of
tests/integration (its ``service_runner``, and the auth tests' running ``auth``, one per
module), and service processes (system)."""

from tests.integration.conftest import service_runner  # noqa: F401  (the fixture, shared)
from tests.integration.test_auth_flows import auth  # noqa: F401
