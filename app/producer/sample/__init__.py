"""The bundled replay sample and the deterministic generator that made it."""
