// cbor-x wraps require('cbor-extract') in try/catch and falls back to pure JS.
throw new Error("cbor-extract stub: native string extraction disabled; cbor-x uses its pure-JS path")
