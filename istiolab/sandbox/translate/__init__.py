"""Istio resources to Envoy configuration, as istiod builds it (see each module)."""
