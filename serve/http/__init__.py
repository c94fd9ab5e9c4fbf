"""The inference server's HTTP side: the Starlette app, the KServe V2 and TF Serving adapters over the
engine (serve/engine/), model control and the OpenAPI document. Started by `python -m serve`."""
