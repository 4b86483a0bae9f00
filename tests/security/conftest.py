"""The security tests drive services in-process against the session's real broker and
database, like the integration tests: their fixture that runs a service is shared."""

from tests.integration.conftest import service_runner

__all__ = ["service_runner"]
