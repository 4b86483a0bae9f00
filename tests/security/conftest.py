"""The security suite runs services in-process like the integration tests do, and reuses the
auth tests' running auth (``auth``: one per module)."""

from tests.integration.conftest import service_runner  # noqa: F401
from tests.integration.test_auth_flows import auth  # noqa: F401
