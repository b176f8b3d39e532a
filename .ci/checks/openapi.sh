#!/usr/bin/env bash
# The spec that clients generate code from is valid OpenAPI 3.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install -q --disable-pip-version-check "openapi-spec-validator>=0.7"
python3 -m openapi_spec_validator openapi.yaml
