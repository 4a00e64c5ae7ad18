"""Test infrastructure: PKIs made on the spot and real servers on loopback.

For tests, benchmarks and the rotation lab, never for analysis: :mod:`pinlab.testbed.pki`
issues CAs and leaves, :mod:`pinlab.testbed.loopback` runs ``openssl s_server``,
:mod:`pinlab.testbed.nginx` an nginx farm of SNI hosts, and :mod:`pinlab.testbed.ctlog` /
:mod:`pinlab.testbed.ctserver` a Certificate Transparency log served over HTTP, and
:mod:`pinlab.testbed.internet` a simulated internet (:mod:`~pinlab.testbed.dns`, a DNS server;
:mod:`~pinlab.testbed.latency`, delaying proxies, black holes, stalls, resets).
"""
