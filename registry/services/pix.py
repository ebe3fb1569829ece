"""IHE PIXm Query (ITI-83): ``GET [base]/Patient/$ihe-pix?sourceIdentifier=…&targetSystem=…``.

Given one identifier of a patient, return the identifiers and Patient resources every hospital holds for the same
person (the same master patient key). Errors as ITI-83 defines them: unknown identifier → 404 ``not-found``; unknown
assigning authority → 400 ``code-invalid``; unknown target system → 403 ``code-invalid``. National identifiers are
never returned (the registry does not hold them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from registry.auth import Principal
from registry.errors import BadRequestError, ForbiddenError, NotFoundError, RegistryError
from registry.services import policy
from registry.services.audit import AuditContext, audit_row, rows_for_patients
from registry.services.search import Reads
from registry.store.query import Query, TokenClause, TokenValue
from registry.store.records import Stored


class CodeInvalidError(RegistryError):
    code = "code-invalid"

    def __init__(self, diagnostics: str, status: int) -> None:
        super().__init__(diagnostics)
        self.status = status


def ihe_pix(
    reads: Reads, principal: Principal, audit: AuditContext, params: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    sources = [v for k, v in params if k == "sourceIdentifier"]
    targets = [v for k, v in params if k == "targetSystem"]
    unknown = [k for k, _ in params if k not in ("sourceIdentifier", "targetSystem", "_format")]
    if unknown:
        raise BadRequestError(f"$ihe-pix does not take {', '.join(unknown)}")
    if len(sources) != 1 or "|" not in sources[0]:
        raise BadRequestError("sourceIdentifier is required once, as system|value")
    system, value = sources[0].split("|", 1)
    identity = reads.ctx.identity
    now = reads.ctx.clock()
    try:
        with reads.ctx.uow.begin(audit_only=True) as repo:
            policy.require_scope(principal, "Patient", "read")
            if identity.is_national(system):
                key = identity.master_key(system, value)
                matched: list[Stored] = repo.patients_by_key([key])
            else:
                if not repo.identifier_system_known("Patient", system):
                    raise CodeInvalidError("sourceIdentifier Assigning Authority not found", 400)
                rows, _ = repo.search(
                    Query("Patient", (TokenClause("identifier", (TokenValue(system, value),)),), count=50)
                )
                matched = rows
            if not matched:
                raise NotFoundError("sourceIdentifier Patient Identifier not found")
            for target in targets:
                if not identity.is_national(target) and not repo.identifier_system_known("Patient", target):
                    raise CodeInvalidError("targetSystem not found", 403)
            keys = sorted({p.patient_key for p in matched if p.patient_key})
            linked = repo.patients_by_key(keys)
            for patient in linked[:1]:
                care = (
                    repo.has_care_context(principal.org_id or "", patient.patient_key or "")
                    if policy.needs_care_context_check(principal, patient)
                    else None
                )
                policy.check_read(principal, patient, care, break_glass=audit.break_glass)
            parameters: list[dict[str, Any]] = []
            for patient in linked:
                body = orjson.loads(patient.body)
                for ident in body.get("identifier") or []:
                    sys_, val = ident.get("system"), ident.get("value")
                    if not sys_ or not val or identity.is_national(sys_):
                        continue
                    if (sys_, val) == (system, value) or (targets and sys_ not in targets):
                        continue
                    parameters.append({"name": "targetIdentifier", "valueIdentifier": {"system": sys_, "value": val}})
                parameters.append({"name": "targetId", "valueReference": {"reference": f"Patient/{patient.id}"}})
            repo.add_audit(rows_for_patients(audit, now=now, status=200, patient_keys=keys))
    except ForbiddenError as exc:
        reads.ctx.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
        raise
    except RegistryError as exc:
        reads.ctx.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
        raise
    return {"resourceType": "Parameters", "parameter": parameters}
