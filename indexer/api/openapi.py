"""The OpenAPI 3.1 document of the /v1 API (served at /v1/openapi.json); a test validates it and its paths."""

from __future__ import annotations

from typing import Any

from indexer.api.inputs import DEFAULT_LIMIT, EVM_PATTERN, MAX_LIMIT, TRON_PATTERN

ADDRESS = {
    "type": "string",
    "description": "EVM: 0x + 40 hex digits (any case; answered lower-case). TRON: base58check T... address.",
    "anyOf": [{"pattern": EVM_PATTERN}, {"pattern": TRON_PATTERN}],
}
AMOUNT = {"type": "string", "pattern": "^[0-9]+$", "description": "Base units, as a decimal string."}
DECIMAL = {"type": "string", "description": "A decimal number as a string (never a float)."}
TIME = {"type": "string", "format": "date-time", "description": "ISO-8601 in UTC, e.g. 2026-01-01T00:00:00Z."}
HEX32 = {"type": "string", "pattern": "^0x[0-9a-f]{64}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties} | extra


SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string", "description": "What was wrong."}}),
    "Epoch": _object(
        {
            "epoch": {"type": "integer", "minimum": 0},
            "start": TIME | {"description": "The epoch's first second (ISO-8601, UTC)."},
            "end": TIME | {"description": "The epoch's end, exclusive (ISO-8601, UTC)."},
            "status": {"type": "string", "enum": ["open", "closed"]},
            "root": {
                "type": ["string", "null"],
                "pattern": "^0x[0-9a-f]{64}$",
                "description": "The Merkle root over the stakers' leaves; null while open or without leaves.",
            },
            "totals": {
                "type": "object",
                "additionalProperties": AMOUNT,
                "description": "The epoch's rewards summed per asset (asset -> base units).",
            },
        }
    ),
    "Epochs": _object({"epochs": {"type": "array", "items": _ref("Epoch")}}),
    "ProofLeaf": _object(
        {
            "asset": {"type": "string"},
            "amount": AMOUNT,
            "leaf": HEX32 | {"description": "keccak256(keccak256(abi.encode(epoch, staker, asset, amount)))."},
            "proof": {"type": "array", "items": HEX32, "description": "Sibling hashes, leaf to root."},
        }
    ),
    "Proof": _object(
        {
            "epoch": {"type": "integer", "minimum": 0},
            "root": HEX32,
            "staker": ADDRESS,
            "leaves": {"type": "array", "items": _ref("ProofLeaf")},
        },
        description="The same JSON as `indexer proof --epoch N --staker ADDRESS`; verifies with OZ MerkleProof.",
    ),
    "ValidatorPoints": _object(
        {"validator": {"type": "string"}, "asset": {"type": "string"}, "amount": AMOUNT, "points": DECIMAL}
    ),
    "Validators": _object({"validators": {"type": "array", "items": _ref("ValidatorPoints")}}),
    "Position": _object(
        {
            "validator": {"type": "string"},
            "asset": {"type": "string"},
            "amount": AMOUNT,
            "share": DECIMAL | {"description": "Share in [0, 1] of the validator's amount of the asset."},
        }
    ),
    "LstBalance": _object({"chain": {"type": "string"}, "contract": {"type": "string"}, "balance": AMOUNT}),
    "PendingWithdrawal": _object(
        {
            "chain": {"type": "string"},
            "contract": {"type": "string"},
            "amount": AMOUNT,
            "unlock_time": TIME,
            "token_id": {"type": ["string", "null"], "description": "ERC-721 v2: the NFT requested (amount 1)."},
        }
    ),
    "Staker": _object(
        {
            "staker": ADDRESS,
            "positions": {"type": "array", "items": _ref("Position")},
            "lst_balances": {"type": "array", "items": _ref("LstBalance")},
            "pending_withdrawals": {"type": "array", "items": _ref("PendingWithdrawal")},
        }
    ),
}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    why = {
        400: "Malformed input (epoch, address, limit, before, or an unknown query parameter).",
        404: "Nothing there.",
        503: "The database did not answer.",
    }
    return {str(s): _answer(why[s], "Error") for s in (*statuses, 503)}


def _path_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


EPOCH_PARAM = _path_param("n", "The epoch number (0, 1, 2, ...).", {"type": "integer", "minimum": 0})


def document() -> dict[str, Any]:
    """The OpenAPI document: every path the server routes under /v1."""
    get = "get"
    paths = {
        "/v1/epochs": {
            get: {
                "summary": "Epochs, newest first",
                "operationId": "listEpochs",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "description": f"At most this many (default {DEFAULT_LIMIT}).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "description": "Only epochs numbered below this (next page: the last epoch of this one).",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": {"200": _answer("Epochs with a recorded reward or a close.", "Epochs"), **_errors(400)},
            }
        },
        "/v1/epochs/{n}": {
            get: {
                "summary": "One epoch",
                "operationId": "getEpoch",
                "parameters": [EPOCH_PARAM],
                "responses": {"200": _answer("The epoch.", "Epoch"), **_errors(400, 404)},
            }
        },
        "/v1/epochs/{n}/proofs/{staker}": {
            get: {
                "summary": "A staker's Merkle leaves and proofs in a closed epoch",
                "operationId": "getProof",
                "parameters": [EPOCH_PARAM, _path_param("staker", "The staker's address.", ADDRESS)],
                "responses": {
                    "200": _answer("The staker's leaves with their proofs.", "Proof"),
                    **_errors(400, 404),
                },
            }
        },
        "/v1/validators": {
            get: {
                "summary": "Every validator's staked amount and points per asset (v_validator_points)",
                "operationId": "listValidators",
                "responses": {"200": _answer("The rows of v_validator_points.", "Validators"), **_errors()},
            }
        },
        "/v1/stakers/{address}": {
            get: {
                "summary": "A staker's positions, liquid-token balances and pending withdrawals",
                "operationId": "getStaker",
                "parameters": [_path_param("address", "The staker's address.", ADDRESS)],
                "responses": {"200": _answer("What the staker holds.", "Staker"), **_errors(400, 404)},
            }
        },
        "/v1/openapi.json": {
            get: {
                "summary": "This document",
                "operationId": "getOpenApi",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Multistaking indexer API",
            "version": "1",
            "description": "Read-only. Amounts are decimal strings in base units; addresses as in the SQL views "
            '(EVM lower-case 0x hex, TRON base58); times ISO-8601 UTC. Errors are {"error": "..."}: 400 for '
            "malformed input, 404 for an unknown epoch or staker or an epoch still open, 503 when the database "
            "does not answer.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
