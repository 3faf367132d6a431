"""Admin fault routes (issue 9, docs/FAULTS.md): arm, list, remove one, remove all."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from mock_server.routes.deps import ADMIN_ONLY, RegistryDep
from mock_server.routes.errors import errors
from mock_server.services import admin

router = APIRouter(tags=["admin"], dependencies=[ADMIN_ONLY], responses=errors(401, 403))  # the admin guard


@router.post("/admin/faults", status_code=201, responses=errors(400, 404, 408, 413, 422, 429))
async def arm_fault(registry: RegistryDep, body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
    """Arm one fault (body: docs/FAULTS.md, schemas/faults/fault.json). 404 unknown session, 422 invalid."""
    return admin.arm_fault(registry, body)


@router.get("/admin/faults")
async def list_faults(registry: RegistryDep) -> dict[str, Any]:
    return {"faults": [f.to_dict() for f in registry.faults.list()]}


@router.delete("/admin/faults/{fault_id}", responses=errors(404))
async def remove_fault(fault_id: str, registry: RegistryDep) -> dict[str, Any]:
    return registry.faults.remove(fault_id).to_dict()


@router.delete("/admin/faults")
async def clear_faults(registry: RegistryDep) -> dict[str, Any]:
    return {"removed": registry.faults.clear()}
