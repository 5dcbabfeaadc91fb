"""The sandbox mesh: Bookinfo as local processes behind real Envoy sidecars and gateway.

A small control plane plays istiod's part: it reads the same Kubernetes and Istio YAML a learner
would apply to a cluster, builds Envoy configuration from it as istiod does, and hands it to each
Envoy through files Envoy watches. model.py is the vocabulary; registry.py is Kubernetes' view,
translate/ is istiod's, envoy/ runs the proxies, supervisor.py the processes.
"""
