"""What a running registry holds: settings, catalog, database, keys, and the services built on them.

Built once by ``create_app(settings)`` (the composition root) and reached by handlers as ``request.app.state.ctx``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

import orjson
from sqlalchemy import Engine

from catalog import Catalog
from registry.auth import TokenService, utcnow
from registry.fhir.response import etag_of
from registry.keys import load_identity_secret, load_signing_key
from registry.metrics import Metrics
from registry.ratelimit import Limiter
from registry.services.administration import Administration
from registry.services.bundle_reads import BundleReads
from registry.services.capability import capability_statement, conformance_resources
from registry.services.catalog_publication import nonrecognition_reasons_codesystem, recognized_items_codesystem
from registry.services.config_cache import ConfigCache
from registry.services.consent import ConsentService
from registry.services.decisions import Decisions
from registry.services.feedback import Feedback
from registry.services.identity import IdentityPolicy
from registry.services.imaging import ImagingGateway, PacsDirectory
from registry.services.ingest import Ingest, WriteContext
from registry.services.namespaces import IdentifierNamespaces
from registry.services.notifications import Notifications, Notifier
from registry.services.portal import Portal
from registry.services.principals import Principals
from registry.services.recognition import RecognitionService
from registry.services.result_index import ResultIndexer
from registry.services.search import ReadContext, Reads
from registry.services.search_query import SearchLimits
from registry.services.stats import Statistics
from registry.services.subscriptions import CriteriaParser, DeliveryPolicy, SubscriptionMatcher
from registry.settings import Settings
from registry.shared_ratelimit import rate_limiter
from registry.store.db import make_engine
from registry.store.replica import ReplicaReads, WriteMarks
from registry.store.repository import UnitOfWork


@dataclass(frozen=True, slots=True)
class Published:
    """A resource serialized once, with its strong ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, resource: dict[str, object]) -> Published:
        body = orjson.dumps(resource)
        return cls(body, etag_of(body))


def replica_reads(
    settings: Settings, primary: UnitOfWork, secret: bytes, metrics: Metrics | None = None
) -> ReplicaReads | None:
    """Reads from the standby at ``REGISTRY_DATABASE_REPLICA_URL``, if one is configured (registry.store.replica)."""
    if not settings.database_replica_url:
        return None
    region = hmac.new(secret, b"hr-registry write marks", hashlib.sha256).hexdigest()[:16]
    marks = WriteMarks(settings.shared_state_url, settings.read_your_writes_seconds, prefix=region)
    counted = metrics.replica_read if metrics is not None else None
    return ReplicaReads(primary, make_engine(settings.database_replica_url), marks, counted=counted)


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    catalog: Catalog
    codesystems: dict[str, Published]
    metadata: Published
    conformance: dict[tuple[str, str], Published]  # (type, id): the OperationDefinitions and SearchParameters
    engine: Engine
    uow: UnitOfWork
    identity: IdentityPolicy
    tokens: TokenService
    principals: Principals
    reads: Reads
    bundle_reads: BundleReads
    ingest: Ingest
    limiter: Limiter
    sign_in_limiter: Limiter
    clock: Callable[[], datetime]
    indexer: ResultIndexer
    recognition: RecognitionService
    decisions: Decisions
    feedback: Feedback
    statistics: Statistics
    administration: Administration
    portal: Portal
    namespaces: IdentifierNamespaces
    session_key: bytes
    local_tz: tzinfo
    metrics: Metrics
    subscriptions: SubscriptionMatcher
    delivery: DeliveryPolicy
    notifications: Notifications
    consent: ConsentService
    imaging: ImagingGateway
    replica: ReplicaReads | None

    @classmethod
    def build(
        cls,
        settings: Settings,
        catalog: Catalog,
        *,
        today: date,
        clock: Callable[[], datetime] = utcnow,
        timer: Callable[[], float] = time.monotonic,
    ) -> AppContext:
        """``timer`` measures the age of cached client rows (seconds, never going back)."""
        engine = make_engine(settings.effective_database_url)
        uow = UnitOfWork(engine)
        secret = load_identity_secret(settings)
        identity = IdentityPolicy(dict(settings.national_id_systems), secret)
        cursor_key = hmac.new(secret, b"hr-registry paging cursor", hashlib.sha256).digest()
        tokens = TokenService(load_signing_key(settings), settings.public_base_url, settings.token_ttl_seconds)
        metrics = Metrics()
        replica = replica_reads(settings, uow, secret, metrics)
        local_tz = catalog.timezone if catalog.timezone is not None else timezone(timedelta(hours=8))
        reads = Reads(
            ReadContext(
                uow,
                identity,
                settings.fhir_base_url,
                local_tz,
                settings.default_page_size,
                settings.max_page_size,
                clock,
                cursor_key,
                SearchLimits(settings.search_max_params, settings.search_max_values, settings.search_max_length),
                sensitive_items=frozenset(i.id for i in catalog.items if i.sensitive),
                replica=replica,
            )
        )
        indexer = ResultIndexer(catalog, local_tz, settings.fhir_base_url, frozenset(settings.hr_mark_codes))
        config_cache = ConfigCache(ttl_seconds=10.0)
        subscriptions = SubscriptionMatcher(CriteriaParser(identity, local_tz, settings.fhir_base_url),
                                            allow_http_loopback=settings.subscription_allow_http_loopback)  # fmt: skip
        ingest = Ingest(
            WriteContext(
                uow,
                identity,
                settings.fhir_base_url,
                local_tz,
                clock,
                settings.max_bundle_entries,
                indexer,
                subscriptions,
                frozenset(settings.shared_identifier_systems),
                Notifier(catalog),
            )
        )
        decisions = Decisions(uow, catalog, clock)
        imaging = ImagingGateway(
            reads,
            uow,
            PacsDirectory.parse(settings.dicomweb_endpoints),
            clock,
            decision_seconds=settings.dicomweb_decision_seconds,
            image_max_age=settings.dicomweb_image_max_age_seconds,
            timer=timer,
        )
        return cls(
            settings=settings,
            catalog=catalog,
            codesystems={
                "recognized-items": Published.of(recognized_items_codesystem(catalog)),
                "nonrecognition-reasons": Published.of(nonrecognition_reasons_codesystem()),
            },
            metadata=Published.of(
                capability_statement(
                    settings.fhir_base_url,
                    published=today,
                    token_url=f"{settings.public_base_url}/auth/token",
                    cors=bool(settings.cors_origins),
                )
            ),
            conformance={key: Published.of(r) for key, r in conformance_resources(today).items()},
            engine=engine,
            uow=uow,
            identity=identity,
            tokens=tokens,
            principals=Principals(engine, tokens, clock, cache_seconds=settings.client_cache_seconds, timer=timer),
            reads=reads,
            bundle_reads=BundleReads(reads),
            ingest=ingest,
            limiter=rate_limiter(
                settings.shared_state_url,
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
                max_keys=settings.rate_limit_max_keys,
                secret=secret,
                name="api",
            ),
            sign_in_limiter=rate_limiter(  # per account: 10 attempts at once, then one every 5 s
                settings.shared_state_url,
                0.2,
                10,
                max_keys=settings.rate_limit_max_keys,
                secret=secret,
                name="sign-in",
            ),
            clock=clock,
            indexer=indexer,
            recognition=RecognitionService(uow, catalog, identity, indexer, clock, config_cache, ingest, replica),
            decisions=decisions,
            feedback=Feedback(uow, decisions, clock),
            statistics=Statistics(uow, catalog, local_tz),
            administration=Administration(uow, catalog, indexer, clock, config_cache),
            namespaces=IdentifierNamespaces(uow, clock),
            portal=Portal(reads, uow, catalog, indexer, config_cache, local_tz, clock),
            session_key=hmac.new(secret, b"hr-registry web session", hashlib.sha256).digest(),
            local_tz=local_tz,
            metrics=metrics,
            subscriptions=subscriptions,
            delivery=DeliveryPolicy(
                settings.subscription_max_attempts,
                settings.subscription_retry_base_seconds,
                settings.subscription_retry_max_seconds,
                settings.subscription_timeout_seconds,
            ),
            notifications=Notifications(uow, clock),
            consent=ConsentService(uow, catalog, clock, local_tz, settings.fhir_base_url),
            imaging=imaging,
            replica=replica,
        )
