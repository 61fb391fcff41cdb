"""Kubernetes manifests: render the kustomize overlays and validate them offline (schemas + security rules)."""
