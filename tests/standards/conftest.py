"""The standards suite reuses the security suite's bundle of every service's app."""

from tests.directory.conftest import directory_client  # noqa: F401
from tests.integration.conftest import integration_client  # noqa: F401
from tests.notifications.conftest import notifications_client  # noqa: F401
from tests.security.conftest import apis  # noqa: F401
