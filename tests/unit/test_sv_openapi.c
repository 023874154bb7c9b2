/* The OpenAPI document served at /api/v1/openapi.json describes exactly the routes the router
 * serves: every (method, path) of the route table is in the document and the other way round, and
 * the document is well-formed OpenAPI 3 (the integration test test_api_routes.sh also validates it
 * with a validator from the npm registry and probes every route over HTTP). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "supervisor/api_int.h"
#include "supervisor/openapi.h"
#include "tap.h"

static const char *const methods[] = { "get", "post", "put", "patch", "delete" };

int main(void) {
        cJSON *doc = cJSON_ParseWithLength((const char *) sv_openapi_json, sv_openapi_json_len);
        ok(doc != NULL, "the embedded document is JSON");
        if (!doc)
                return tap_done();
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "openapi");
        ok(cJSON_IsString(ver) && !strncmp(ver->valuestring, "3.", 2), "it is OpenAPI 3");
        const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
        ok(cJSON_IsObject(paths), "it has paths");
        size_t n;
        const sv_route *routes = sv_api_routes(&n);
        int missing = 0, extra = 0;
        for (size_t i = 0; i < n; i++) {
                const cJSON *p = cJSON_GetObjectItemCaseSensitive(paths, routes[i].pattern);
                char m[8];
                size_t k = 0;
                for (; routes[i].method[k] && k < sizeof m - 1; k++)
                        m[k] = (char) (routes[i].method[k] | 0x20);
                m[k] = '\0';
                if (!p || !cJSON_GetObjectItemCaseSensitive(p, m)) {
                        printf("# served but not documented: %s %s\n", routes[i].method, routes[i].pattern);
                        missing++;
                }
        }
        const cJSON *p;
        int documented = 0, no_responses = 0;
        cJSON_ArrayForEach(p, paths) {
                for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
                        const cJSON *op = cJSON_GetObjectItemCaseSensitive(p, methods[k]);
                        if (!op)
                                continue;
                        documented++;
                        if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(op, "responses")))
                                no_responses++;
                        bool found = false;
                        for (size_t i = 0; i < n && !found; i++)
                                found = !strcmp(routes[i].pattern, p->string) && !strcasecmp(routes[i].method, methods[k]);
                        if (!found) {
                                printf("# documented but not served: %s %s\n", methods[k], p->string);
                                extra++;
                        }
                }
        }
        ok(missing == 0, "every served route is documented (%zu routes)", n);
        ok(extra == 0, "every documented operation is served (%d operations)", documented);
        ok(no_responses == 0, "every operation documents its responses");
        cJSON_Delete(doc);
        return tap_done();
}
