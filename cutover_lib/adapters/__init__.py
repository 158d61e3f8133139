"""The outside world, behind one module each: commands (shell), HTTP, Docker/compose, Helm and
Kubernetes, the bridge webhook, Prometheus, Chromium, the change ticket, backups, plug-in modes."""
