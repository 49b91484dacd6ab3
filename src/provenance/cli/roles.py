"""`provenance role grant|revoke|list`: who may register on an allowlist registry, who may
revoke any model, who administers the roles (OpenZeppelin AccessControl on the ModelRegistry).

An account is an address or a keystore file (its address is read; no password needed).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provenance.cli._common import AsJson, PasswordFile, out, say, session
from provenance.errors import ChainError, ConfigError

if TYPE_CHECKING:
    from provenance.chain.registry import Registry
    from provenance.session import Session

app = typer.Typer(
    help="Roles on the ModelRegistry: registrant, auditor, admin.", no_args_is_help=True
)


class Role(StrEnum):
    registrant = "registrant"
    auditor = "auditor"
    admin = "admin"


RoleArgument = Annotated[
    Role,
    typer.Argument(
        metavar="ROLE",
        help="registrant (may register on an allowlist), auditor (may revoke any model) or "
        "admin (grants and revokes roles).",
    ),
]
Account = Annotated[
    str, typer.Argument(metavar="ACCOUNT", help="An address, or a keystore file holding it.")
]
Keystore = Annotated[
    Path | None,
    typer.Option(help="Encrypted keyfile JSON of an admin (else PROVENANCE_KEYSTORE)."),
]


def account_address(text: str) -> str:
    """An address given as such, or read from a keystore file."""
    from eth_utils.address import is_address, to_checksum_address

    if is_address(text):
        return str(to_checksum_address(text))
    path = Path(text)
    if path.is_file():
        from provenance.chain.keys import keystore_address

        return keystore_address(path)
    raise ConfigError(f"{text!r} is neither an address (0x + 40 hex digits) nor a keystore file")


def _admin_registry(s: Session) -> Registry:
    """The registry sending as the session's signer, who must hold its admin role."""
    registry = s.registry_for()
    sender = registry.sender or ""
    if not registry.has_role("admin", sender):
        admins = ", ".join(h.account for h in registry.role_holders("admin")) or "none"
        raise ChainError(
            f"{sender} is not an admin of the ModelRegistry at {registry.address}; only an "
            f"admin may grant or revoke roles (admins: {admins})"
        )
    return registry


def _change(role: Role, account: str, grant: bool, keystore: Path | None, pw: Path | None) -> None:
    address = account_address(account)
    with session(keystore=keystore, password_file=pw) as s:
        registry = _admin_registry(s)
        holds = registry.has_role(role.value, address)
        if holds == grant:
            state = "already holds" if grant else "does not hold"
            say(f"{address} {state} the {role.value} role; nothing sent")
            return
        if role is Role.admin and not grant:
            admins = [h.account for h in registry.role_holders("admin")]
            if admins == [address]:
                raise ConfigError(
                    f"{address} is the registry's only admin: revoking it would leave nobody "
                    "to manage roles; grant admin to another account first"
                )
        if grant:
            tx = registry.grant_role(role.value, address)
        else:
            tx = registry.revoke_role(role.value, address)
        verb = "granted" if grant else "revoked"
        say(f"{verb} {role.value} {'to' if grant else 'from'} {address} (tx {tx})")
        if role is Role.registrant and registry.is_open():
            out.print(
                "  note: this registry is open (deployed without --allowlist): anyone may "
                "register, the registrant role changes nothing",
                highlight=False,
                soft_wrap=True,
            )


@app.command()
def grant(
    role: RoleArgument,
    account: Account,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Grant a role (the sender must be an admin)."""
    _change(role, account, True, keystore, password_file)


@app.command()
def revoke(
    role: RoleArgument,
    account: Account,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Revoke a role (the sender must be an admin)."""
    _change(role, account, False, keystore, password_file)


@app.command("list")
def list_roles(
    role: Annotated[Role | None, typer.Argument(metavar="[ROLE]", help="Only this role.")] = None,
    as_json: AsJson = False,
) -> None:
    """Who holds which role now (from the registry's RoleGranted/RoleRevoked events)."""
    with session() as s:
        registry = s.registry
        holders = registry.role_holders(None if role is None else role.value)
        is_open = registry.is_open()
    if as_json:
        report = {
            "registry": registry.address,
            "open_registration": is_open,
            "holders": [h.to_json() for h in holders],
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    mode = "open: anyone may register" if is_open else "allowlist: registrants only"
    out.print(f"ModelRegistry {registry.address} ({mode})", highlight=False, soft_wrap=True)
    if not holders:
        out.print("  no role holders", highlight=False)
    for h in holders:
        out.print(
            f"  {h.role:<10} {h.account}  (block {h.block}, by {h.granted_by})",
            highlight=False,
            soft_wrap=True,
        )


__all__ = ["Role", "account_address", "app", "session"]
