"""All models, importable from one place."""
from .hosts import PoolGrant, WorkerProcess
from .notifications import EVENTS, Event, Notification, NotificationChannel, NotificationDelivery
from .registry import RegistryCredential
from .tenancy import ApiKey, Environment, Membership, Project, Team, User
from .workflows import STATUSES, TERMINAL, TRIGGERS, Run, RunCount, RunLogBlock, Workflow

__all__ = [
    "ApiKey", "Environment", "Event", "EVENTS", "Membership", "Notification", "NotificationChannel",
    "NotificationDelivery", "PoolGrant", "Project", "RegistryCredential", "Run", "RunCount", "RunLogBlock", "STATUSES",
    "Team", "TERMINAL", "TRIGGERS", "User", "Workflow", "WorkerProcess",
]
