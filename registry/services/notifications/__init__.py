"""Patient notifications of new and corrected reports by SMS and app push through a gateway seam
(docs/notifications.md): texts, the queue written with the report, delivery, the patient's settings."""

from registry.services.notifications.delivery import Delivery, Gateway, RetryPolicy, Worker, worker_for
from registry.services.notifications.queue import Notifier, message_key
from registry.services.notifications.service import Notifications, QueueState

__all__ = [
    "Delivery",
    "Gateway",
    "Notifications",
    "Notifier",
    "QueueState",
    "RetryPolicy",
    "Worker",
    "message_key",
    "worker_for",
]
