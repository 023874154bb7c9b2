/* ns_request_parse: good requests parse into the right fields; bad ones fail with the right errno,
 * message and echoed id.  TAP output. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "sandboxd/request.h"
#include "tap.h"

#define V "\"v\":1,\"id\":7,"

struct bad {
        const char *json;
        int err;            /* expected errno */
        const char *msg;    /* substring of the message */
        long long id;       /* expected req.id */
};

static const struct bad bad_cases[] = {
        /* Not JSON, not an object, envelope. */
        {"{", EINVAL, "not valid JSON", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"list\"} x", EINVAL, "not valid JSON", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"list\",}", EINVAL, "not valid JSON", -1},
        {"[1,2]", EINVAL, "not a JSON object", -1},
        {"\"list\"", EINVAL, "not a JSON object", -1},
        {"null", EINVAL, "not a JSON object", -1},
        {"42", EINVAL, "not a JSON object", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"list\",\"x\":NaN}", EINVAL, "not valid JSON", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"list\",\"x\":Infinity}", EINVAL, "not valid JSON", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"li\xffst\"}", EINVAL, "UTF-8", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"\xc0\xafx\"}", EINVAL, "UTF-8", -1},       /* overlong '/' */
        {"{\"v\":1,\"id\":7,\"op\":\"\xed\xa0\x80\"}", EINVAL, "UTF-8", -1},    /* surrogate */
        {"{\"v\":1,\"id\":7,\"op\":\"list\\u0000\"}", EINVAL, "escaped NUL", -1},
        {"{\"v\":1,\"id\":7,\"op\":\"list\",\"x\":[[[[[[[[[1]]]]]]]]]}", EINVAL, "nested", -1},
        {"{}", EINVAL, "field 'id' is required", -1},
        {"{\"v\":1,\"op\":\"list\"}", EINVAL, "field 'id' is required", -1},
        {"{\"v\":1,\"id\":\"7\",\"op\":\"list\"}", EINVAL, "field 'id' must be an integer", -1},
        {"{\"v\":1,\"id\":-1,\"op\":\"list\"}", EINVAL, "field 'id' must be an integer in", -1},
        {"{\"v\":1,\"id\":7.5,\"op\":\"list\"}", EINVAL, "field 'id'", -1},
        {"{\"v\":1,\"id\":9007199254740994,\"op\":\"list\"}", EINVAL, "field 'id'", -1},
        {"{\"v\":1,\"id\":1e400,\"op\":\"list\"}", EINVAL, "field 'id'", -1},
        {"{\"v\":1,\"id\":7,\"id\":8,\"op\":\"list\"}", EINVAL, "duplicate field 'id'", 7},
        {"{\"id\":7,\"op\":\"list\"}", EINVAL, "field 'v' is required", 7},
        {"{\"v\":2,\"id\":7,\"op\":\"list\"}", EPROTONOSUPPORT, "version 2", 7},
        {"{\"v\":\"1\",\"id\":7,\"op\":\"list\"}", EINVAL, "field 'v' must be an integer", 7},
        {"{\"v\":1,\"id\":9007199254740992}", EINVAL, "field 'op' is required", 9007199254740992LL},
        {"{\"v\":1,\"id\":0,\"op\":\"lst\"}", EOPNOTSUPP, "unknown op 'lst'", 0},
        {"{\"v\":1,\"id\":7,\"op\":\"\"}", EINVAL, "field 'op' must be 1 to", 7},
        {"{\"v\":1,\"id\":7,\"op\":5}", EINVAL, "field 'op' must be a string", 7},
        {"{\"v\":1,\"id\":7,\"op\":\"LIST\"}", EOPNOTSUPP, "unknown op", 7},
        {"{\"v\":1,\"id\":7,\"op\":\"list\",\"sandbox\":\"a\"}", EINVAL, "unknown field 'sandbox'", 7},
        {"{\"v\":1,\"id\":7,\"op\":\"list\",\"op\":\"list\"}", EINVAL, "duplicate field 'op'", 7},
        {"{\"v\":1,\"id\":7,\"op\":\"version\",\"verbose\":true}", EINVAL, "unknown field 'verbose'", 7},

        /* Sandbox ids. */
        {"{" V "\"op\":\"stats\"}", EINVAL, "field 'sandbox' is required", 7},
        {"{" V "\"op\":\"stats\",\"sandbox\":\"\"}", EINVAL, "field 'sandbox'", 7},
        {"{" V "\"op\":\"stats\",\"sandbox\":\"-abc\"}", EINVAL, "not a valid sandbox id", 7},
        {"{" V "\"op\":\"stats\",\"sandbox\":\"ABC\"}", EINVAL, "not a valid sandbox id", 7},
        {"{" V "\"op\":\"stats\",\"sandbox\":\"a/b\"}", EINVAL, "not a valid sandbox id", 7},
        {"{" V "\"op\":\"stats\",\"sandbox\":\"..\"}", EINVAL, "not a valid sandbox id", 7},
        {"{" V "\"op\":\"stats\",\"sandbox\":\"a23456789012345678901234567890123\"}", EINVAL, "field 'sandbox'", 7},
        {"{" V "\"op\":\"freeze\",\"sandbox\":7}", EINVAL, "field 'sandbox' must be a string", 7},
        {"{" V "\"op\":\"destroy\",\"sandbox\":\"abc\",\"force\":true}", EINVAL, "unknown field 'force'", 7},
        {"{" V "\"op\":\"thaw\",\"sandbox\":\"abc\",\"sandbox\":\"abd\"}", EINVAL, "duplicate field 'sandbox'", 7},

        /* create: limits. */
        {"{" V "\"op\":\"create\",\"memory\":1048576}", EINVAL, "field 'memory' must be 0 or an integer in [4194304,", 7},
        {"{" V "\"op\":\"create\",\"memory\":-1}", EINVAL, "field 'memory' must be 0 or", 7},
        {"{" V "\"op\":\"create\",\"memory\":1099511627777}", EINVAL, "field 'memory'", 7},
        {"{" V "\"op\":\"create\",\"memory\":4194304.5}", EINVAL, "field 'memory'", 7},
        {"{" V "\"op\":\"create\",\"memory\":1e400}", EINVAL, "field 'memory'", 7},
        {"{" V "\"op\":\"create\",\"memory\":-1e400}", EINVAL, "field 'memory'", 7},
        {"{" V "\"op\":\"create\",\"memory\":\"1G\"}", EINVAL, "field 'memory' must be an integer", 7},
        {"{" V "\"op\":\"create\",\"memory\":true}", EINVAL, "field 'memory' must be an integer", 7},
        {"{" V "\"op\":\"create\",\"pids\":1000001}", EINVAL, "field 'pids' must be 0 or an integer in [1, 1000000]", 7},
        {"{" V "\"op\":\"create\",\"pids\":-5}", EINVAL, "field 'pids'", 7},
        {"{" V "\"op\":\"create\",\"pids\":[1]}", EINVAL, "field 'pids' must be an integer", 7},
        {"{" V "\"op\":\"create\",\"cpus\":0}", EINVAL, "field 'cpus' must be a finite number", 7},
        {"{" V "\"op\":\"create\",\"cpus\":0.001}", EINVAL, "field 'cpus'", 7},
        {"{" V "\"op\":\"create\",\"cpus\":1025}", EINVAL, "field 'cpus'", 7},
        {"{" V "\"op\":\"create\",\"cpus\":1e400}", EINVAL, "field 'cpus'", 7},
        {"{" V "\"op\":\"create\",\"cpus\":\"2\"}", EINVAL, "field 'cpus' must be a number", 7},
        {"{" V "\"op\":\"create\",\"disk\":1048576}", EINVAL, "field 'disk' must be 0 or", 7},
        {"{" V "\"op\":\"create\",\"disk\":17592186044417}", EINVAL, "field 'disk'", 7},
        {"{" V "\"op\":\"create\",\"net\":\"bridge\"}", EINVAL, "net mode 'bridge' is not supported (none, private or nat)", 7},
        {"{" V "\"op\":\"create\",\"net\":\"\"}", EINVAL, "field 'net'", 7},
        {"{" V "\"op\":\"create\",\"ephemeral\":\"yes\"}", EINVAL, "field 'ephemeral' must be true or false", 7},
        {"{" V "\"op\":\"create\",\"ephemeral\":1}", EINVAL, "field 'ephemeral' must be true or false", 7},
        {"{" V "\"op\":\"create\",\"net\":\"n\\u0001t\"}", EINVAL, "net mode 'n?t'", 7},
        {"{" V "\"op\":\"create\",\"argv\":[\"sh\"]}", EINVAL, "unknown field 'argv'", 7},
        {"{" V "\"op\":\"create\",\"memory\":8388608,\"memory\":8388608}", EINVAL, "duplicate field 'memory'", 7},

        /* create: paths. */
        {"{" V "\"op\":\"create\",\"workspace\":\"relative\"}", EINVAL, "field 'workspace' must be an absolute path", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/a/../b\"}", EINVAL, "field 'workspace' must be an absolute path", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/a//b\"}", EINVAL, "field 'workspace'", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/a/\"}", EINVAL, "field 'workspace'", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/a/./b\"}", EINVAL, "field 'workspace'", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/\"}", EINVAL, "field 'workspace'", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"\"}", EINVAL, "field 'workspace'", 7},
        {"{" V "\"op\":\"create\",\"workspace\":[\"/a\"]}", EINVAL, "field 'workspace' must be a string", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":{\"src\":\"/a\",\"dst\":\"/b\"}}", EINVAL, "field 'ro_binds' must be an array", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[\"/a\"]}", EINVAL, "ro_binds[0] must be an object", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\"}]}", EINVAL, "ro_binds[0]: field 'dst' is required", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/b\",\"rw\":true}]}", EINVAL, "ro_binds[0]: unknown field 'rw'", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/b\"},{\"src\":\"a\",\"dst\":\"/b\"}]}", EINVAL, "ro_binds[1]: field 'src'", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/\"}]}", EINVAL, "ro_binds[0]: field 'dst'", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/proc\"}]}", EINVAL, "not be under /proc", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/dev/shm\"}]}", EINVAL, "not be under /proc", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/sys/fs/cgroup\"}]}", EINVAL, "not be under /proc", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/x/../proc\"}]}", EINVAL, "field 'dst'", 7},
        {"{" V "\"op\":\"create\",\"ro_binds\":[{\"src\":\"/a\",\"dst\":\"/b\",\"src\":\"/c\"}]}", EINVAL, "duplicate field 'src'", 7},

        /* create: layers, connect. */
        {"{" V "\"op\":\"create\",\"layers\":[]}", EINVAL, "field 'layers' must not be empty", 7},
        {"{" V "\"op\":\"create\",\"layers\":\"host\"}", EINVAL, "field 'layers' must be an array", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"..\"]}", EINVAL, "layer name '..' is not valid", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\".\"]}", EINVAL, "layer name '.' is not valid", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"a/b\"]}", EINVAL, "layer name 'a/b'", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"Host\"]}", EINVAL, "layer name 'Host'", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"\"]}", EINVAL, "layer name ''", 7},
        {"{" V "\"op\":\"create\",\"layers\":[1]}", EINVAL, "must hold only strings", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"a\",\"b\",\"a\"]}", EINVAL, "layer 'a' is listed twice", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\".hidden\"]}", EINVAL, "layer name '.hidden' is not valid", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"-a\"]}", EINVAL, "layer name '-a' is not valid", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"@host\"]}", EINVAL, "field 'layers' is only \"@host\"", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"a\",\"@host\"]}", EINVAL, "layer name '@host' is not valid", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"@host\",\"a\",\"@host\"]}", EINVAL, "layer name '@host'", 7},
        /* create: overlays (dirs beneath /workspace/ seen copy-on-write). */
        {"{" V "\"op\":\"create\",\"overlays\":[\"/workspace/a\"]}", EINVAL, "field 'overlays' needs a workspace", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/etc\"]}", EINVAL, "must be a clean path beneath /workspace/", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace\"]}", EINVAL, "beneath /workspace/", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace/../etc\"]}", EINVAL, "beneath /workspace/", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace/a\",\"/workspace/a/b\"]}", EINVAL, "overlaps another overlay", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace/a/b\",\"/workspace/a\"]}", EINVAL, "overlaps another overlay", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace/a\",\"/workspace/a\"]}", EINVAL, "overlaps another overlay", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace/a\",\"/workspace/b\",\"/workspace/c\",\"/workspace/d\",\"/workspace/e\"]}", E2BIG, "field 'overlays' has more than 4 items", 7},
        {"{" V "\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[7]}", EINVAL, "must hold only strings", 7},
        /* snapshot, layers, layer_remove. */
        {"{" V "\"op\":\"snapshot\",\"sandbox\":\"abc\"}", EINVAL, "field 'layer' is required", 7},
        {"{" V "\"op\":\"snapshot\",\"layer\":\"x\"}", EINVAL, "field 'sandbox' is required", 7},
        {"{" V "\"op\":\"snapshot\",\"sandbox\":\"abc\",\"layer\":\"../x\"}", EINVAL, "layer name '../x' is not valid", 7},
        {"{" V "\"op\":\"snapshot\",\"sandbox\":\"abc\",\"layer\":\"@host\"}", EINVAL, "layer name '@host' is not valid", 7},
        {"{" V "\"op\":\"snapshot\",\"sandbox\":\"abc\",\"layer\":7}", EINVAL, "field 'layer' must be a string", 7},
        {"{" V "\"op\":\"layers\",\"sandbox\":\"abc\"}", EINVAL, "unknown field 'sandbox'", 7},
        {"{" V "\"op\":\"layer_remove\"}", EINVAL, "field 'layer' is required", 7},
        {"{" V "\"op\":\"layer_remove\",\"layer\":\".meta-a\"}", EINVAL, "layer name '.meta-a' is not valid", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\","
         "\"m\",\"n\",\"o\",\"p\",\"q\"]}", E2BIG, "field 'layers' has more than 16 items", 7},
        {"{" V "\"op\":\"create\",\"layers\":[\"a12345678901234567890123456789012345678901234567890123456789012345\"]}",
         E2BIG, "field 'layers'", 7},
        {"{" V "\"op\":\"create\",\"connect\":[{\"port\":0}]}", EINVAL, "connect[0]: field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"create\",\"connect\":[{\"port\":65536}]}", EINVAL, "connect[0]: field 'port'", 7},
        {"{" V "\"op\":\"create\",\"connect\":[{\"host_port\":80}]}", EINVAL, "connect[0]: field 'port' is required", 7},
        {"{" V "\"op\":\"create\",\"connect\":[{\"port\":80,\"host_port\":-1}]}", EINVAL, "connect[0]: field 'host_port'", 7},
        {"{" V "\"op\":\"create\",\"connect\":[{\"port\":80,\"host\":\"x\"}]}", EINVAL, "connect[0]: unknown field 'host'", 7},
        {"{" V "\"op\":\"create\",\"connect\":[80]}", EINVAL, "connect[0] must be an object", 7},

        /* exec. */
        {"{" V "\"op\":\"exec\",\"argv\":[\"sh\"]}", EINVAL, "field 'sandbox' is required", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\"}", EINVAL, "field 'argv' is required", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[]}", EINVAL, "field 'argv' must not be empty", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":\"sh\"}", EINVAL, "field 'argv' must be an array", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\",1]}", EINVAL, "field 'argv' must hold only strings", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"\"]}", EINVAL, "argv[0] must not be empty", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"env\":[\"PATH\"]}", EINVAL, "env[0] must have the form NAME=VALUE", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"env\":[\"A=1\",\"=x\"]}", EINVAL, "env[1] must have the form", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"env\":[\"\"]}", EINVAL, "env[0]", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"env\":\"A=1\"}", EINVAL, "field 'env' must be an array", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"cwd\":\"tmp\"}", EINVAL, "field 'cwd' must be an absolute path", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"cwd\":\"/tmp/..\"}", EINVAL, "field 'cwd'", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"root\":1}", EINVAL, "field 'root' must be true or false", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"tty\":\"yes\"}", EINVAL, "field 'tty' must be true or false", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"rows\":0}", EINVAL, "field 'rows' must be an integer in [1, 1000]", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"cols\":1001}", EINVAL, "field 'cols'", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"timeout\":-1}", EINVAL, "field 'timeout' must be an integer in [0, 31536000]", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"timeout\":31536001}", EINVAL, "field 'timeout'", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"timeout\":1.5}", EINVAL, "field 'timeout'", 7},
        {"{" V "\"op\":\"exec\",\"sandbox\":\"abc\",\"argv\":[\"sh\"],\"memory\":8388608}", EINVAL, "unknown field 'memory'", 7},

        /* attach, signal, wait, connect. */
        {"{" V "\"op\":\"attach\",\"sandbox\":\"abc\"}", EINVAL, "field 'proc' is required", 7},
        {"{" V "\"op\":\"attach\",\"sandbox\":\"abc\",\"proc\":0}", EINVAL, "field 'proc' must be an integer in [1, 9007199254740992]", 7},
        {"{" V "\"op\":\"attach\",\"sandbox\":\"abc\",\"proc\":1,\"from\":-1}", EINVAL, "field 'from'", 7},
        {"{" V "\"op\":\"attach\",\"sandbox\":\"abc\",\"proc\":1,\"from\":9007199254740994}", EINVAL, "field 'from'", 7},
        {"{" V "\"op\":\"attach\",\"sandbox\":\"abc\",\"proc\":1,\"signal\":9}", EINVAL, "unknown field 'signal'", 7},
        {"{" V "\"op\":\"signal\",\"sandbox\":\"abc\",\"proc\":1}", EINVAL, "field 'signal' is required", 7},
        {"{" V "\"op\":\"signal\",\"sandbox\":\"abc\",\"proc\":1,\"signal\":0}", EINVAL, "field 'signal' must be an integer in [1, 64]", 7},
        {"{" V "\"op\":\"signal\",\"sandbox\":\"abc\",\"proc\":1,\"signal\":65}", EINVAL, "field 'signal'", 7},
        {"{" V "\"op\":\"signal\",\"sandbox\":\"abc\",\"proc\":1,\"signal\":\"KILL\"}", EINVAL, "field 'signal' must be an integer", 7},
        {"{" V "\"op\":\"wait\",\"sandbox\":\"abc\",\"proc\":1.5}", EINVAL, "field 'proc'", 7},
        {"{" V "\"op\":\"wait\",\"sandbox\":\"abc\",\"proc\":1,\"from\":0}", EINVAL, "unknown field 'from'", 7},
        {"{" V "\"op\":\"connect\",\"sandbox\":\"abc\"}", EINVAL, "field 'port' is required", 7},
        {"{" V "\"op\":\"connect\",\"sandbox\":\"abc\",\"port\":70000}", EINVAL, "field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"connect\",\"sandbox\":\"abc\",\"port\":80,\"host_port\":0}", EINVAL, "field 'host_port'", 7},
        /* publish, unpublish, listening. */
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\"}", EINVAL, "field 'port' is required", 7},
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\",\"port\":0}", EINVAL, "field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\",\"port\":70000}", EINVAL, "field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\",\"port\":80,\"host_port\":70000}", EINVAL, "field 'host_port'", 7},
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\",\"port\":80.5}", EINVAL, "field 'port'", 7},
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\",\"port\":\"80\"}", EINVAL, "field 'port'", 7},
        {"{" V "\"op\":\"publish\",\"port\":80}", EINVAL, "field 'sandbox' is required", 7},
        {"{" V "\"op\":\"publish\",\"sandbox\":\"abc\",\"port\":80,\"host\":\"0.0.0.0\"}", EINVAL, "unknown field 'host'", 7},
        {"{" V "\"op\":\"unpublish\",\"sandbox\":\"abc\",\"port\":80,\"host_port\":8080}", EINVAL, "unknown field 'host_port'", 7},
        {"{" V "\"op\":\"unpublish\",\"sandbox\":\"abc\"}", EINVAL, "field 'port' is required", 7},
        {"{" V "\"op\":\"listening\",\"sandbox\":\"abc\",\"port\":80}", EINVAL, "unknown field 'port'", 7},
        /* dial: a sandbox and a port, nothing else. */
        {"{" V "\"op\":\"dial\",\"sandbox\":\"abc\"}", EINVAL, "field 'port' is required", 7},
        {"{" V "\"op\":\"dial\",\"sandbox\":\"abc\",\"port\":0}", EINVAL, "field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"dial\",\"sandbox\":\"abc\",\"port\":65536}", EINVAL, "field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"dial\",\"sandbox\":\"abc\",\"port\":\"80\"}", EINVAL, "field 'port'", 7},
        {"{" V "\"op\":\"dial\",\"port\":80}", EINVAL, "field 'sandbox' is required", 7},
        {"{" V "\"op\":\"dial\",\"sandbox\":\"a/b\",\"port\":80}", EINVAL, "not a valid sandbox id", 7},
        {"{" V "\"op\":\"dial\",\"sandbox\":\"abc\",\"port\":80,\"host\":\"10.0.0.1\"}", EINVAL, "unknown field 'host'", 7},
        {"{" V "\"op\":\"create\",\"publish\":[{\"port\":0}]}", EINVAL, "publish[0]: field 'port' must be an integer in [1, 65535]", 7},
        {"{" V "\"op\":\"create\",\"publish\":[{\"port\":80,\"host_port\":65536}]}", EINVAL, "publish[0]: field 'host_port'", 7},
        {"{" V "\"op\":\"create\",\"publish\":[{\"port\":80},{\"port\":80}]}", EINVAL, "publish[1]: port 80 or its host port is named twice", 7},
        {"{" V "\"op\":\"create\",\"publish\":[{\"port\":80,\"host_port\":20000},{\"port\":81,\"host_port\":20000}]}", EINVAL, "named twice", 7},
        {"{" V "\"op\":\"create\",\"publish\":[80]}", EINVAL, "publish[0] must be an object", 7},
        {"{" V "\"op\":\"create\",\"publish\":{\"port\":80}}", EINVAL, "field 'publish' must be an array", 7},
        {"{" V "\"op\":\"create\",\"publish\":[{\"port\":1},{\"port\":2},{\"port\":3},{\"port\":4},{\"port\":5},{\"port\":6},{\"port\":7},{\"port\":8},{\"port\":9},{\"port\":10},{\"port\":11},{\"port\":12},{\"port\":13},{\"port\":14},{\"port\":15},{\"port\":16},{\"port\":17},{\"port\":18},{\"port\":19},{\"port\":20},{\"port\":21},{\"port\":22},{\"port\":23},{\"port\":24},{\"port\":25},{\"port\":26},{\"port\":27},{\"port\":28},{\"port\":29},{\"port\":30},{\"port\":31},{\"port\":32},{\"port\":33}]}", E2BIG, "more than 32 items", 7},
};

static void test_bad(void) {
        for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
                const struct bad *b = &bad_cases[i];
                struct ns_request req;
                ns_error err = {0};
                int r = ns_request_parse(b->json, strlen(b->json), &req, &err);
                int good = r == -b->err && err.code == b->err && strstr(err.msg, b->msg) && req.id == b->id &&
                           !req.json;
                ok(good, "refused %s", b->json);
                if (!good)
                        printf("# got r=%d (%s) id=%lld msg='%s'; want %s id=%lld msg~'%s'\n", r,
                               ns_errno_name(-r), (long long) req.id, err.msg, ns_errno_name(b->err), b->id,
                               b->msg);
                ns_request_done(&req);
        }
}

static int parse(const char *json, struct ns_request *req, ns_error *err) {
        return ns_request_parse(json, strlen(json), req, err);
}

static void test_raw(void) {
        struct ns_request req;
        ns_error err = {0};
        const char good[] = "{\"v\":1,\"id\":3,\"op\":\"list\"}";

        ok(ns_request_parse(good, 0, &req, &err) == -EINVAL && strstr(err.msg, "empty"), "empty datagram");

        char nul[] = "{\"v\":1,\"id\":3,\"op\":\"list\"}";
        nul[5] = '\0';
        ok(ns_request_parse(nul, sizeof nul - 1, &req, &err) == -EINVAL && strstr(err.msg, "NUL byte"),
           "embedded NUL byte");
        ok(ns_request_parse(good, sizeof good, &req, &err) == -EINVAL && strstr(err.msg, "NUL byte"),
           "trailing NUL byte counted in the length");

        /* Exactly the limit passes (whitespace padding), one more byte is EMSGSIZE. */
        size_t max = NS_PROTO_MAX_MSG;
        _cleanup_free_ char *big = malloc(max + 1);
        memset(big, ' ', max + 1);
        memcpy(big, good, strlen(good));
        ok(ns_request_parse(big, max, &req, &err) == 0 && req.op == NS_OP_LIST && req.id == 3,
           "message of exactly %zu bytes", max);
        ns_request_done(&req);
        ok(ns_request_parse(big, max + 1, &req, &err) == -EMSGSIZE && req.id == -1, "message of %zu bytes",
           max + 1);

        /* Deep nesting, far past cJSON's own limit, is refused cheaply. */
        _cleanup_free_ char *deep = malloc(max);
        size_t n = (size_t) sprintf(deep, "{\"v\":1,\"id\":3,\"op\":\"list\",\"x\":");
        while (n < max - 2)
                deep[n++] = '[';
        ok(ns_request_parse(deep, n, &req, &err) == -EINVAL && strstr(err.msg, "nested"), "deep nesting");

        /* A string with brackets inside does not count as nesting. */
        ok(parse("{\"v\":1,\"id\":3,\"op\":\"exec\",\"sandbox\":\"a\",\"argv\":[\"[[[[[[[[[[[[\\\"{{{{{{{{{{\"]}",
                 &req, &err) == 0 &&
                   strcmp(req.u.exec.argv[0], "[[[[[[[[[[[[\"{{{{{{{{{{") == 0,
           "brackets inside strings");
        ns_request_done(&req);

        /* Valid multi-byte UTF-8 passes. */
        ok(parse("{\"v\":1,\"id\":3,\"op\":\"exec\",\"sandbox\":\"a\",\"argv\":[\"echo\",\"h\xc3\xa9 \xe2\x82\xac "
                 "\xf0\x9f\x98\x80\"]}",
                 &req, &err) == 0,
           "UTF-8 arguments");
        ns_request_done(&req);

        /* argv + env together over NS_ARG_BYTES_MAX: E2BIG. */
        _cleanup_free_ char *args = malloc(2 * NS_ARG_BYTES_MAX);
        int k = sprintf(args, "{\"v\":1,\"id\":3,\"op\":\"exec\",\"sandbox\":\"a\",\"argv\":[\"");
        memset(args + k, 'a', 20000);
        k += 20000;
        k += sprintf(args + k, "\"],\"env\":[\"X=");
        memset(args + k, 'b', 20000);
        k += 20000;
        k += sprintf(args + k, "\"]}");
        ok(ns_request_parse(args, (size_t) k, &req, &err) == -E2BIG && strstr(err.msg, "together") && req.id == 3,
           "argv + env over %d bytes", NS_ARG_BYTES_MAX);

        /* Too many argv items. */
        _cleanup_free_ char *many = malloc(8 * (NS_ARGV_MAX + 2) + 100);
        k = sprintf(many, "{\"v\":1,\"id\":3,\"op\":\"exec\",\"sandbox\":\"a\",\"argv\":[\"x\"");
        for (int i = 0; i < NS_ARGV_MAX; i++)
                k += sprintf(many + k, ",\"y\"");
        k += sprintf(many + k, "]}");
        ok(ns_request_parse(many, (size_t) k, &req, &err) == -E2BIG && strstr(err.msg, "more than 1024"),
           "argv of %d items", NS_ARGV_MAX + 1);

        /* NULL err is allowed. */
        ok(ns_request_parse("{", 1, &req, NULL) == -EINVAL, "NULL err");
        /* done twice is harmless */
        ns_request_done(&req);
        ns_request_done(&req);
        ok(req.json == NULL, "double done");
}

static void test_good(void) {
        struct ns_request req;
        ns_error err = {0};
        int r;

        r = parse("{\"v\":1,\"id\":0,\"op\":\"version\"}", &req, &err);
        ok(r == 0 && req.op == NS_OP_VERSION && req.id == 0 && !req.sandbox, "version");
        ns_request_done(&req);

        r = parse(" { \"op\" : \"list\" , \"id\" : 9007199254740992 , \"v\" : 1 } \n", &req, &err);
        ok(r == 0 && req.op == NS_OP_LIST && req.id == 9007199254740992LL, "list, any order, whitespace, id 2^53");
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":5,\"op\":\"list\",\"x\":null}", &req, &err);
        ok(r == -EINVAL && strstr(err.msg, "unknown field 'x'"), "null members are still members");

        r = parse("{\"v\":1.0,\"id\":5e0,\"op\":\"create\"}", &req, &err);
        ok(r == 0 && req.op == NS_OP_CREATE && req.id == 5 && !req.u.create.workspace && !req.u.create.layers &&
                   req.u.create.memory == 0 && req.u.create.cpu_millis == 0 && strcmp(req.u.create.net, "none") == 0 &&
                   req.u.create.n_ro_binds == 0 && req.u.create.n_connects == 0 && !req.u.create.ephemeral,
           "create with defaults (not ephemeral)");
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":6,\"op\":\"create\",\"workspace\":\"/srv/ws/s1\",\"layers\":[\"host\",\"agents-1.2_x\"],"
                  "\"memory\":4194304,\"pids\":1000000,\"cpus\":1.5,\"disk\":17592186044416,\"net\":\"none\","
                  "\"ro_binds\":[{\"src\":\"/opt/tools\",\"dst\":\"/opt/tools\"},{\"dst\":\"/procfoo\",\"src\":\"/x\"}],"
                  "\"connect\":[{\"port\":8080},{\"port\":443,\"host_port\":40443}],\"ephemeral\":true}",
                  &req, &err);
        struct ns_create_req *c = &req.u.create;
        ok(r == 0 && req.op == NS_OP_CREATE && strcmp(c->workspace, "/srv/ws/s1") == 0 && c->n_layers == 2 &&
                   strcmp(c->layers[0], "host") == 0 && strcmp(c->layers[1], "agents-1.2_x") == 0 && !c->layers[2] &&
                   c->memory == 4194304 && c->pids == 1000000 && c->cpu_millis == 1500 &&
                   c->disk == 17592186044416ULL && c->n_ro_binds == 2 && strcmp(c->ro_binds[1].dst, "/procfoo") == 0 &&
                   c->n_connects == 2 && c->connects[0].port == 8080 && c->connects[0].host_port == 8080 &&
                   c->connects[1].port == 443 && c->connects[1].host_port == 40443 && c->ephemeral,
           "create with everything (%s)", err.msg);
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":6,\"op\":\"create\",\"cpus\":0.01,\"memory\":0,\"pids\":0,\"disk\":0}", &req, &err);
        ok(r == 0 && req.u.create.cpu_millis == 10 && req.u.create.memory == 0, "cpus 0.01 → 10 millis, zero limits");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":6,\"op\":\"create\",\"cpus\":0.0125}", &req, &err);
        ok(r == 0 && req.u.create.cpu_millis == 13, "cpus rounds to nearest milli");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":6,\"op\":\"create\",\"cpus\":1024,\"memory\":1099511627776}", &req, &err);
        ok(r == 0 && req.u.create.cpu_millis == 1024000 && req.u.create.memory == 1099511627776ULL, "upper bounds");
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":8,\"op\":\"exec\",\"sandbox\":\"s3k9-x\",\"argv\":[\"sh\",\"-c\",\"\"],"
                  "\"env\":[\"A=\",\"B==c\"],\"cwd\":\"/\",\"root\":true,\"tty\":false,\"rows\":24,\"cols\":1000,"
                  "\"timeout\":31536000}",
                  &req, &err);
        struct ns_exec_req *e = &req.u.exec;
        ok(r == 0 && req.op == NS_OP_EXEC && strcmp(req.sandbox, "s3k9-x") == 0 && e->sandbox == req.sandbox &&
                   e->argc == 3 && strcmp(e->argv[2], "") == 0 && !e->argv[3] && e->envc == 2 &&
                   strcmp(e->env[1], "B==c") == 0 && !e->env[2] && strcmp(e->cwd, "/") == 0 && e->root && !e->tty &&
                   e->rows == 24 && e->cols == 1000 && e->timeout_ms == 31536000000ULL,
           "exec with everything (%s)", err.msg);
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":8,\"op\":\"exec\",\"sandbox\":\"a\",\"argv\":[\"true\"]}", &req, &err);
        ok(r == 0 && req.u.exec.envc == 0 && !req.u.exec.env && !req.u.exec.cwd && req.u.exec.timeout_ms == 0 &&
                   req.u.exec.rows == 0,
           "exec with defaults");
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":9,\"op\":\"attach\",\"sandbox\":\"a\",\"proc\":9007199254740992,\"from\":12}",
                  &req, &err);
        ok(r == 0 && req.op == NS_OP_ATTACH && req.u.attach.proc == 9007199254740992ULL && req.u.attach.from == 12,
           "attach");
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":9,\"op\":\"signal\",\"sandbox\":\"a\",\"proc\":3,\"signal\":64}", &req, &err);
        ok(r == 0 && req.op == NS_OP_SIGNAL && req.u.signal.proc == 3 && req.u.signal.signal == 64, "signal");
        ns_request_done(&req);

        r = parse("{\"v\":1,\"id\":9,\"op\":\"wait\",\"sandbox\":\"a\",\"proc\":3}", &req, &err);
        ok(r == 0 && req.op == NS_OP_WAIT && req.u.wait.proc == 3 && strcmp(req.sandbox, "a") == 0, "wait");
        ns_request_done(&req);

        static const struct { const char *op; enum ns_op want; } simple[] = {
                {"stats", NS_OP_STATS}, {"freeze", NS_OP_FREEZE}, {"thaw", NS_OP_THAW}, {"destroy", NS_OP_DESTROY}};
        for (size_t i = 0; i < ARRAY_SIZE(simple); i++) {
                char buf[128];
                snprintf(buf, sizeof buf, "{\"v\":1,\"id\":1,\"op\":\"%s\",\"sandbox\":\"a234567890123456789012345678901b\"}",
                         simple[i].op);
                r = parse(buf, &req, &err);
                ok(r == 0 && req.op == simple[i].want && strlen(req.sandbox) == 32, "%s", simple[i].op);
                ns_request_done(&req);
        }

        r = parse("{\"v\":1,\"id\":9,\"op\":\"snapshot\",\"sandbox\":\"a\",\"layer\":\"deps-1.2_x\"}", &req, &err);
        ok(r == 0 && req.op == NS_OP_SNAPSHOT && !strcmp(req.sandbox, "a") && !strcmp(req.u.layer, "deps-1.2_x"),
           "snapshot");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"create\",\"workspace\":\"/w\",\"overlays\":[\"/workspace/node_modules\","
                  "\"/workspace/.venv\",\"/workspace/ab\",\"/workspace/a\"]}", &req, &err);
        ok(r == 0 && req.u.create.n_overlays == 4 && !strcmp(req.u.create.overlays[1], "/workspace/.venv"),
           "create with overlays (a prefix that is not a parent is no overlap)");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"create\",\"layers\":[\"@host\",\"a\",\"b\"]}", &req, &err);
        ok(r == 0 && req.u.create.n_layers == 3 && !strcmp(req.u.create.layers[0], "@host"), "create over @host");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"connect\",\"sandbox\":\"a\",\"port\":5432}", &req, &err);
        ok(r == 0 && req.op == NS_OP_CONNECT && req.u.connect.port == 5432 && req.u.connect.host_port == 5432,
           "connect, host_port defaults to port");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"connect\",\"sandbox\":\"a\",\"port\":1,\"host_port\":65535}", &req, &err);
        ok(r == 0 && req.u.connect.port == 1 && req.u.connect.host_port == 65535, "connect with host_port");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"publish\",\"sandbox\":\"a\",\"port\":5173}", &req, &err);
        ok(r == 0 && req.op == NS_OP_PUBLISH && req.u.publish.port == 5173 && req.u.publish.host_port == 0,
           "publish, host_port defaults to any");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"create\",\"publish\":[{\"port\":8000},{\"port\":5173,\"host_port\":20001}]}",
                  &req, &err);
        ok(r == 0 && req.u.create.n_publishes == 2 && req.u.create.publishes[0].host_port == 0 &&
           req.u.create.publishes[1].port == 5173 && req.u.create.publishes[1].host_port == 20001, "create with publish");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"listening\",\"sandbox\":\"a\"}", &req, &err);
        ok(r == 0 && req.op == NS_OP_LISTENING && strcmp(req.sandbox, "a") == 0, "listening");
        ns_request_done(&req);
        r = parse("{\"v\":1,\"id\":9,\"op\":\"dial\",\"sandbox\":\"a\",\"port\":5173}", &req, &err);
        ok(r == 0 && req.op == NS_OP_DIAL && strcmp(req.sandbox, "a") == 0 && req.u.publish.port == 5173, "dial");
        ns_request_done(&req);
}

static void test_helpers(void) {
        static const struct { const char *p; bool root, want; } paths[] = {
                {"/", true, true},        {"/", false, false},         {"/a", false, true},
                {"/a/b.c/d", false, true}, {"/..a/b..", false, true},  {"/.a", false, true},
                {"", true, false},        {"a", true, false},          {"a/b", true, false},
                {"//", true, false},      {"/a//b", true, false},      {"/a/", true, false},
                {"/./a", true, false},    {"/a/.", true, false},       {"/a/..", true, false},
                {"/a/../b", true, false}, {"/..", true, false},        {"/.", true, false},
        };
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
                ok(ns_path_is_clean(paths[i].p, paths[i].root) == paths[i].want, "path '%s'%s is %s", paths[i].p,
                   paths[i].root ? " (root allowed)" : "", paths[i].want ? "clean" : "not clean");
        ok(!ns_path_is_clean(NULL, true), "NULL path");
        char longp[NS_PATH_MAX + 2];
        memset(longp, 'a', sizeof longp);
        longp[0] = '/';
        longp[NS_PATH_MAX] = '\0';
        ok(ns_path_is_clean(longp, false), "path of NS_PATH_MAX bytes");
        longp[NS_PATH_MAX] = 'a';
        longp[NS_PATH_MAX + 1] = '\0';
        ok(!ns_path_is_clean(longp, false), "path of NS_PATH_MAX + 1 bytes");

        static const struct { const char *id; bool want; } ids[] = {
                {"a", true},   {"0", true},    {"s3k9-x", true}, {"a2345678901234567890123456789012", true},
                {"", false},   {"-a", false},  {"A", false},     {"a_b", false},
                {"a.b", false}, {"a b", false}, {"a23456789012345678901234567890123", false},
        };
        for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
                ok(ns_id_is_valid(ids[i].id) == ids[i].want, "id '%s' is %s", ids[i].id, ids[i].want ? "valid" : "invalid");
        ok(!ns_id_is_valid(NULL), "NULL id");

        ok(strcmp(ns_op_name(NS_OP_CREATE), "create") == 0 && strcmp(ns_op_name(NS_OP_LIST), "list") == 0 &&
                   ns_op_name(NS_OP__COUNT) == NULL && ns_op_name((enum ns_op) -1) == NULL,
           "ns_op_name");
        int all = 1;
        for (int i = 0; i < NS_OP__COUNT; i++)
                all &= ns_op_name((enum ns_op) i) != NULL;
        ok(all, "every op has a name");
}

int main(void) {
        test_bad();
        test_raw();
        test_good();
        test_helpers();
        return tap_done();
}
