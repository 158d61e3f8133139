"""Named stand-ins for tools and services that cannot run on this machine.

``kube_api``: a loopback HTTP server answering the subset of the Kubernetes API that
``cutover_lib.adapters.kube`` calls.  ``helm``: an executable that records its argv and keeps a
release history like helm 3.  Both say plainly what they stand in for; neither is a
Kubernetes cluster or a helm binary.
"""
