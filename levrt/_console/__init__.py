"""The platform's HTTP API (``levrt-console``): the registry, jobs, logs and records over JSON, with
Kubernetes sign-in.

Why a front end of its own, on top of the CLI's pieces: analysts get a tool's page, a run from a
form and its results without kubectl, and every request is judged by the apiserver (TokenReview,
SubjectAccessReview on ``levrt.io`` resources), so platform teams grant access with ordinary
Roles. It reads and starts jobs with the same code the CLI does (``levrt._cli.ps`` rows, the
published-tool orchestration Pod, the log archive); nothing below imports it.

- ``auth``: who a bearer token is and what that caller may do, asked of the apiserver;
- ``service``: what each endpoint does, on the store and the cluster, without HTTP;
- ``app``: the routes (one table, also the OpenAPI document), errors as statuses, streaming;
- ``__main__``: ``python -m levrt._console``, the Deployment's command (uvicorn).
"""
