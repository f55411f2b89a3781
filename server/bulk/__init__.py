"""POST /v1/bulk: sub-requests run in process through the server's own interceptor chain (see
docs/bulk.md). The pieces: envelope (validate the whole batch first), references (`@{id.path}`),
transcode (REST <-> messages as Envoy does it), context (a servicer context per sub-request),
handlers (the wrapped method handlers), runner (the loop: order, halting, time budget)."""
