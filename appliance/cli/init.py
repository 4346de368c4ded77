"""`heron-manager init` and `cluster init|status`: a new data directory, cluster schemas."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..core.config import load_config, render_toml
from ..core.errors import ConfigError
from ..runtime.context import build_context
from ..runtime.datadir import data_paths, open_cluster_context
from ..security.pki import Pki
from ..store import Role, Store
from ..store.events import NoEventStore

__all__ = ["cmd_cluster", "cmd_init"]


def cmd_cluster(args: argparse.Namespace) -> int:
    """`cluster init`: schemas (+ the first admin user); `cluster status`: each dependency."""
    from ..runtime.cluster import cluster_status, init_cluster

    config = load_config(data_paths(args.data_dir)["config"])
    if config.cluster.mode != "cluster":
        raise ConfigError(
            'set [cluster] mode = "cluster" in config.toml first',
            source=str(data_paths(args.data_dir)["config"]),
        )
    if args.action == "status":
        out = cluster_status(config.cluster)
        print(json.dumps(out))
        return 0 if out["ok"] else 1
    out = init_cluster(config.cluster)
    ctx = open_cluster_context(args.data_dir, config, with_events=False)
    try:
        if ctx.store.users.count() == 0:
            _, key = ctx.identity.add_user(
                args.admin_user, Role.ADMIN, description="created by heron-manager cluster init"
            )
            out["api_key"] = key
    finally:
        ctx.close()
    print(json.dumps(out))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    paths = data_paths(data_dir)
    db, ca = paths["db"].exists(), (paths["pki"] / "ca.pem").exists()
    if db and ca and args.if_needed:  # MSI reinstall over the kept data dir
        print(f"{data_dir} is already initialized: kept as it is")
        return 0
    if db or ca:
        raise ConfigError("already initialized", source=str(data_dir))
    key_file: Path | None = args.key_file
    if key_file is not None and key_file.exists():
        raise ConfigError("the key file exists already", source=str(key_file))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    config = load_config(paths["config"]).with_listen(
        admin=args.admin_listen, endpoint=args.endpoint_listen
    )
    if args.server_name:
        from dataclasses import replace

        from ..security.hostnames import expand_server_names

        names = tuple(expand_server_names(args.server_name))
        config = replace(config, tls=replace(config.tls, server_names=names))
    if not paths["config"].exists():
        paths["config"].write_text(render_toml(config), encoding="utf-8")
    pki = Pki.create(
        paths["pki"], server_names=config.tls.server_names, server_days=config.tls.server_cert_days
    )
    paths["db"].parent.mkdir(parents=True, exist_ok=True)
    for name in ("artifacts", "events"):
        paths[name].mkdir(exist_ok=True)
    with Store(paths["db"]) as store:
        ctx = build_context(
            data_dir=data_dir, config=config, store=store, events=NoEventStore(), pki=pki
        )
        user, key = ctx.identity.add_user(
            args.admin_user, Role.ADMIN, description="created by heron-manager init"
        )
    out = {
        "admin_url": config.admin_url(),
        "endpoint_url": config.endpoint_url(),
        "api_key": key,
        "ca_cert": str(pki.ca_path.resolve()),
        "ca_sha256": pki.ca_sha256,
    }
    if key_file is not None:
        _write_private(key_file, json.dumps(out, indent=1) + "\n")
        out = {k: v for k, v in out.items() if k != "api_key"} | {"api_key_file": str(key_file)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"initialized {data_dir}")
        for k, v in out.items():
            print(f"  {k}: {v}")
        if key_file is None:
            print("keep the api_key: it is shown only once")
    return 0


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` for its owner only (0600; on Windows the ACL comes from the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
