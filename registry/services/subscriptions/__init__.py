"""FHIR R4 Subscriptions, criteria-based with the ``rest-hook`` channel (R4 core subscription.html, not the
topic-based Subscriptions Backport IG): :mod:`.criteria` (what a Subscription asks for), :mod:`.matching` (accepting
Subscriptions; matching writes in their transaction), :mod:`.delivery` (the worker sending notifications),
:mod:`.status` (the server's ``active``/``error``) and :mod:`.queue` (what the command line shows and re-queues)."""

from registry.services.subscriptions.criteria import CriteriaParser
from registry.services.subscriptions.delivery import DeliveryLoop, DeliveryPolicy, DeliveryWorker
from registry.services.subscriptions.matching import SubscriptionMatcher

__all__ = ["CriteriaParser", "DeliveryLoop", "DeliveryPolicy", "DeliveryWorker", "SubscriptionMatcher"]
