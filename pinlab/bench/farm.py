"""The nginx farm the collection benchmarks and the cluster tests run against."""

from __future__ import annotations

from pinlab.collect import Target
from pinlab.testbed.nginx import VirtualHost
from pinlab.testbed.pki import CA, KeyType, pooled_key

__all__ = ["farm_hosts", "farm_targets"]


def farm_hosts(count: int, *, domain: str, name: str = "Bench") -> tuple[CA, list[VirtualHost]]:
    """A root and ``count`` nginx virtual hosts ``hN.<domain>`` (with ``*.hN`` aliases).

    Leaves alternate P-256 and RSA-2048 (keys from the process's pool, so that hundreds of
    hosts cost no RSA key generation), each sent with its intermediate.
    """
    root = CA.root(f"{name} Root")
    intermediate = root.child_ca(f"{name} Intermediate")
    hosts = []
    for index in range(count):
        host = f"h{index}.{domain}"
        if index % 2:
            key = pooled_key(KeyType.RSA2048, index % 16)
            leaf = intermediate.issue_leaf(host, f"*.{host}", key=key)
        else:
            leaf = intermediate.issue_leaf(host, f"*.{host}", key_type=KeyType.P256)
        chain = leaf.cert_pem + intermediate.cert_pem
        hosts.append(VirtualHost(host, chain, leaf.key_pem, aliases=(f"*.{host}",)))
    return root, hosts


def farm_targets(count: int, hosts: int, port: int, *, domain: str) -> list[Target]:
    """``count`` distinct ``127.0.0.1,tJ.hN.<domain>`` targets spread over the hosts."""
    names = [f"t{j}.h{j % hosts}.{domain}" for j in range(count)]
    return [Target(name, port, name, "127.0.0.1") for name in names]
