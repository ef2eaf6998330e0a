"""Kubernetes helpers shared by the worker backend and the CLI: names and manifests.

``names``      what a workflow name or version id must look like to become a label value, how a worker
               Deployment is named (a valid DNS-1123 label, unique per workflow and version)
``manifests``  the YAML a cluster needs to run diachronic itself, and the versioned worker Deployment that
               users' CD pipelines apply

Nothing here talks to a cluster; ``diachronic.workers.kubernetes`` does.
"""

from __future__ import annotations
