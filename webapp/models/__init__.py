"""All models, importable from one place."""
from .audit import AuditEntry
from .backfills import Backfill
from .envgroups import EnvGroup, EnvGroupVersion
from .hooks import WorkflowHook
from .hosts import PoolGrant, WorkerProcess
from .idempotency import IdempotencyKey
from .notifications import Event, Notification, NotificationChannel, NotificationDelivery
from .registry import RegistryCredential
from .tenancy import ApiKey, Environment, Invitation, Membership, Project, SsoGroupMap, Team, User
from .workflows import Run, RunCount, RunLogBlock, Workflow, WorkflowEdge

__all__ = [
    "ApiKey", "AuditEntry", "Backfill", "EnvGroup", "EnvGroupVersion", "Environment", "Event", "IdempotencyKey", "Invitation", "Membership", "Notification", "NotificationChannel",
    "NotificationDelivery", "PoolGrant", "Project", "RegistryCredential", "Run", "RunCount", "RunLogBlock", "SsoGroupMap", 
    "Team", "User", "Workflow", "WorkflowEdge", "WorkflowHook", "WorkerProcess",
]
