"""Istio's Bookinfo sample resources, written out once for the tests (and the sandbox benchmark).

Each constant mirrors one file of Istio's samples/bookinfo (or, where a task writes its YAML
inline, that task's YAML), in the file's own layout, as learners apply it on istio.io's tasks. A
test that needs a variation derives it locally (str.replace, or the two builders). Every text
starts and ends with a newline, so texts join into one multi-document YAML with "---":
`REVIEWS_TEST_V2 + "---" + RATINGS_TEST_DELAY`.
"""

from __future__ import annotations


def destination_rule(host: str, *versions: str) -> str:
    """A DestinationRule for `host` with one subset per version, each named after the version it
    selects (label version=<v>): one document of destination-rule-all.yaml."""
    subsets = "".join(f"  - name: {v}\n    labels:\n      version: {v}\n" for v in versions)
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {host}
spec:
  host: {host}
  subsets:
{subsets}"""


def virtual_service_to(host: str, subset: str) -> str:
    """A VirtualService that sends every request for `host` to one subset: one document of
    virtual-service-all-v1.yaml (subset v1), or virtual-service-reviews-v3.yaml (reviews, v3)."""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {host}
spec:
  hosts:
  - {host}
  http:
  - route:
    - destination:
        host: {host}
        subset: {subset}
"""


# samples/bookinfo/platform/kube/bookinfo.yaml: its four Services and six Deployments, cut to what
# references need (Service selectors and ports, pod labels), with istiolab's images.
BOOKINFO = "".join(
    f"""
---
apiVersion: v1
kind: Service
metadata:
  name: {app}
  labels: {{app: {app}, service: {app}}}
spec:
  ports:
    - port: 9080
      name: http
  selector:
    app: {app}
"""
    for app in ("details", "ratings", "reviews", "productpage")
) + "".join(
    f"""
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}-{version}
  labels: {{app: {app}, version: {version}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {app}, version: {version}}}
  template:
    metadata:
      labels: {{app: {app}, version: {version}}}
    spec:
      serviceAccountName: bookinfo-{app}
      containers:
        - name: {app}
          image: istiolab/examples-bookinfo-{app}-{version}:0.1.0
          imagePullPolicy: IfNotPresent
          ports:
            - containerPort: 9080
"""
    for app, version in (
        ("details", "v1"),
        ("ratings", "v1"),
        ("reviews", "v1"),
        ("reviews", "v2"),
        ("reviews", "v3"),
        ("productpage", "v1"),
    )
)

# samples/bookinfo/networking/bookinfo-gateway.yaml (istio.io: Getting Started).
BOOKINFO_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  selector:
    istio: ingressgateway # use istio default controller
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"""

# samples/bookinfo/networking/destination-rule-all.yaml (istio.io: Request routing, step one).
DESTINATION_RULE_ALL = "---".join(
    destination_rule(host, *versions)
    for host, versions in (
        ("productpage", ["v1"]),
        ("reviews", ["v1", "v2", "v3"]),
        ("ratings", ["v1", "v2", "v2-mysql", "v2-mysql-vm"]),
        ("details", ["v1", "v2"]),
    )
)

# destination-rule-all.yaml's reviews document alone: subsets v1, v2, v3 (not Istio's
# destination-rule-reviews.yaml, which adds a RANDOM load balancer).
REVIEWS_SUBSETS = destination_rule("reviews", "v1", "v2", "v3")

# samples/bookinfo/networking/virtual-service-all-v1.yaml (istio.io: Request routing).
VIRTUAL_SERVICE_ALL_V1 = "---".join(
    virtual_service_to(host, "v1") for host in ("productpage", "reviews", "ratings", "details")
)

# samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml (istio.io: Request routing).
REVIEWS_TEST_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
"""

# samples/bookinfo/networking/virtual-service-reviews-50-v3.yaml (istio.io: Traffic shifting).
REVIEWS_50_V3 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
"""

# samples/bookinfo/networking/virtual-service-reviews-90-10.yaml.
REVIEWS_90_10 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
"""

# samples/bookinfo/networking/virtual-service-ratings-test-delay.yaml (istio.io: Fault injection).
RATINGS_TEST_DELAY = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        percentage:
          value: 100.0
        fixedDelay: 7s
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"""

# samples/bookinfo/networking/virtual-service-ratings-test-abort.yaml (istio.io: Fault injection).
RATINGS_TEST_ABORT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      abort:
        percentage:
          value: 100.0
        httpStatus: 500
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"""

# istio.io's Request timeouts task (inline YAML, no sample file): reviews to v2, 0.5 s timeout.
REVIEWS_TIMEOUT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    timeout: 0.5s
"""
