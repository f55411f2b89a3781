"""SQL implementations of the repository protocols in server/domain/ports.py."""

from server.domain.paging import sort_value
from server.storage.repositories.deliveries import SqlDeliveryRepository
from server.storage.repositories.exceptions import SqlExceptionRepository
from server.storage.repositories.history import SqlHistoryRepository
from server.storage.repositories.routing import SqlRoutingRuleRepository
from server.storage.repositories.sla import SqlSlaPolicyRepository
from server.storage.repositories.targets import SqlTargetRepository
from server.storage.repositories.tokens import SqlTokenRepository, TokenRow

__all__ = [
    "SqlDeliveryRepository",
    "SqlExceptionRepository",
    "SqlHistoryRepository",
    "SqlRoutingRuleRepository",
    "SqlSlaPolicyRepository",
    "SqlTargetRepository",
    "SqlTokenRepository",
    "TokenRow",
    "sort_value",
]
