"""The demo server's parts (`python -m colorjax.serve` puts them together in `make_server`).

Modules: `app` (the model, the page and what each endpoint does with an upload), `limits`
(`Admission`: requests working and waiting; `Connections`: open connections), `handler`
(`Handler`, one HTTP request and its log line; `Server`, one thread per connection).
"""
