"""The mesh's identities: a certificate authority, and each proxy's workload certificate.

In Istio, istiod is also the mesh's certificate authority (the part once called Citadel), and
pilot-agent, next to each Envoy, asks it for a certificate and hands it to Envoy over SDS. In
the sandbox, the control plane plays both parts: ca.py signs, workload_certs.py decides when a
proxy needs a new certificate, and envoy/sds_files.py writes it where the proxy reads it.
"""
