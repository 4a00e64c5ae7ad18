"""``pinlab bench scale``: campaigns over Dask workers, and the analyses over 10M hosts.

The farm helpers build the loopback nginx farm the scale tests and benchmark collect from.
"""

from __future__ import annotations

from pinlab.nginx import VirtualHost
from pinlab.pki import CA, KeyType, pooled_key
from pinlab.targets import Target

__all__ = ["farm_hosts", "farm_targets"]

DOMAIN = "scale.test"


def farm_hosts(count: int) -> tuple[CA, list[VirtualHost]]:
    """A root and ``count`` nginx virtual hosts ``hN.scale.test`` (with ``*.hN`` aliases).

    Leaves alternate P-256 and RSA-2048 (pooled keys), each sent with its intermediate.
    """
    root = CA.root("Scale Bench Root")
    intermediate = root.child_ca("Scale Bench Intermediate")
    hosts = []
    for index in range(count):
        name = f"h{index}.{DOMAIN}"
        if index % 2:
            key = pooled_key(KeyType.RSA2048, index % 8)
            leaf = intermediate.issue_leaf(name, f"*.{name}", key=key)
        else:
            leaf = intermediate.issue_leaf(name, f"*.{name}", key_type=KeyType.P256)
        chain = leaf.cert_pem + intermediate.cert_pem
        hosts.append(VirtualHost(name, chain, leaf.key_pem, aliases=(f"*.{name}",)))
    return root, hosts


def farm_targets(count: int, hosts: int, port: int) -> list[Target]:
    """``count`` distinct ``127.0.0.1,tJ.hN.scale.test`` targets spread over the hosts."""
    names = [f"t{j}.h{j % hosts}.{DOMAIN}" for j in range(count)]
    return [Target(name, port, name, "127.0.0.1") for name in names]
