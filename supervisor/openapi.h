/* nightshift supervisor — the OpenAPI 3 description of the API (supervisor/openapi.json, embedded
 * at build time by embed.cmake), served at /api/v1/openapi.json. */
#pragma once

#include <stddef.h>

extern const unsigned char sv_openapi_json[];
extern const size_t sv_openapi_json_len;
