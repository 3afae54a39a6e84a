/* Detectron2's results records (`json.dumps` of `instances_to_coco_json`) straight into columns, in one pass.
 *
 * `parse_records(buffer, masks, boxes, base[, rows])` reads `{...}, {...}, ..., {...}`: records with the keys image_id,
 * category_id, bbox, score and (when `masks` is not 0) segmentation {size, counts}, in Detectron2's order, any JSON
 * whitespace between tokens. It returns (n, image_id, category_id, score, bbox, hw, counts_start, counts_end) as
 * bytes of int64 / float64 values (bbox: None unless `boxes`; hw and the counts offsets: None unless `masks` is 1;
 * offsets are `base` + the position in the buffer), or None for anything else: another key or order, a number
 * that is not a plain JSON number (NaN, Infinity), an integer field written as a float, a string escape other than
 * a backslash's. The caller then reads the file with `json.load` and its per-record checks. `rows` reserves room.
 * `parse_file(fd, masks, boxes, block[, rows])` reads a whole file `[...]` from a descriptor, `block` bytes at a
 * time (nothing of it is kept: masks 0 or 2). Both run without the GIL, so a thread can read while another works.
 *
 * Numbers are exactly Python's `float()` of the token: Clinger's exact path (a significand below 2^53 times or
 * over an exact power of ten up to 1e22 is one correctly rounded IEEE operation), else `PyOS_string_to_double`,
 * the correctly rounded conversion that `json.load` itself uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *data;
    Py_ssize_t len, cap; /* bytes */
} Column;

static int column_push(Column *c, const void *value, Py_ssize_t size) {
    if (c->len + size > c->cap) {
        Py_ssize_t cap = c->cap ? 2 * c->cap : 1 << 16;
        while (cap < c->len + size) cap *= 2;
        char *grown = PyMem_RawRealloc(c->data, (size_t)cap); /* the GIL is released while parsing */
        if (!grown) return -1;
        c->data = grown;
        c->cap = cap;
    }
    memcpy(c->data + c->len, value, (size_t)size);
    c->len += size;
    return 0;
}

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* `"key"` then `:`, whitespace allowed around each; NULL if not there. */
static const char *expect_key(const char *p, const char *e, const char *key, size_t key_len) {
    p = skip_ws(p, e);
    if ((size_t)(e - p) < key_len || memcmp(p, key, key_len) != 0) return NULL;
    p = skip_ws(p + key_len, e);
    if (p >= e || *p != ':') return NULL;
    return skip_ws(p + 1, e);
}

static const char *expect_char(const char *p, const char *e, char c) {
    p = skip_ws(p, e);
    if (p >= e || *p != c) return NULL;
    return p + 1;
}

/* A JSON integer (no fraction, no exponent) within int64's range of 18 digits. */
static const char *parse_int(const char *p, const char *e, int64_t *out) {
    int neg = 0, digits = 0;
    int64_t v = 0;
    if (p < e && *p == '-') neg = 1, p++;
    if (p < e && *p == '0' && p + 1 < e && p[1] >= '0' && p[1] <= '9') return NULL; /* leading zero */
    while (p < e && *p >= '0' && *p <= '9') {
        if (++digits > 18) return NULL;
        v = v * 10 + (*p++ - '0');
    }
    if (!digits || (p < e && (*p == '.' || *p == 'e' || *p == 'E'))) return NULL;
    *out = neg ? -v : v;
    return p;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number as Python's float() of it; NULL if the token is not a JSON number (or an error is set). */
static const char *parse_number(const char *p, const char *e, double *out, int convert) {
    const char *start = p;
    int neg = 0, sig = 0, inexact = 0, exp10 = 0, int_digits = 0, frac_digits = 0, has_exp = 0;
    uint64_t m = 0;
    if (p < e && *p == '-') neg = 1, p++;
    if (p < e && *p == '0' && p + 1 < e && p[1] >= '0' && p[1] <= '9') return NULL;
    for (; p < e && *p >= '0' && *p <= '9'; p++, int_digits++) {
        int d = *p - '0';
        if (m == 0 && d == 0) continue;
        if (sig < 19) m = m * 10 + (uint64_t)d, sig++;
        else inexact = 1, exp10++;
    }
    if (!int_digits) return NULL;
    if (p < e && *p == '.') {
        for (p++; p < e && *p >= '0' && *p <= '9'; p++, frac_digits++) {
            int d = *p - '0';
            if (m == 0 && d == 0) {
                exp10--;
                continue;
            }
            if (sig < 19) m = m * 10 + (uint64_t)d, sig++, exp10--;
            else inexact = 1;
        }
        if (!frac_digits) return NULL;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        int eneg = 0, edigits = 0, ev = 0;
        has_exp = 1;
        p++;
        if (p < e && (*p == '+' || *p == '-')) eneg = (*p == '-'), p++;
        for (; p < e && *p >= '0' && *p <= '9'; p++, edigits++)
            if (ev < 100000) ev = ev * 10 + (*p - '0');
        if (!edigits) return NULL;
        exp10 += eneg ? -ev : ev;
    }
    if (!convert) return p;
    if (m == 0 && !inexact) {
        *out = neg && (frac_digits || has_exp) ? -0.0 : 0.0; /* json.load reads "-0" as the integer 0 */
    } else if (!inexact && m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)m;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        *out = neg ? -v : v;
    } else {
        char token[128];
        char *end = NULL;
        Py_ssize_t len = p - start;
        if (len >= (Py_ssize_t)sizeof(token)) return NULL;
        memcpy(token, start, (size_t)len);
        token[len] = '\0';
        PyGILState_STATE gil = PyGILState_Ensure();
        double v = PyOS_string_to_double(token, &end, NULL); /* overflow gives inf, as float() does */
        int failed = v == -1.0 && PyErr_Occurred();
        if (failed) PyErr_Clear(); /* not a number float() reads: not this layout */
        PyGILState_Release(gil);
        if (failed || end != token + len) return NULL;
        *out = v;
    }
    return p;
}

/* A JSON string whose only escape is `\\` (RLE counts); start and end (closing quote) positions. Its characters
   are checked where they are decoded (the evaluator's `_rle.decode` admits pycocotools' alphabet only). */
static const char *parse_counts(const char *p, const char *e, const char **s, const char **q) {
    if (p >= e || *p != '"') return NULL;
    *s = ++p;
    for (;;) {
        const char *quote = memchr(p, '"', (size_t)(e - p));
        if (!quote) return NULL;
        const char *bs = memchr(p, '\\', (size_t)(quote - p));
        if (!bs) {
            *q = quote;
            return quote + 1;
        }
        if (bs + 1 >= e || bs[1] != '\\') return NULL;
        p = bs + 2;
    }
}

#define KEY(p, name) ((p) = expect_key((p), e, "\"" name "\"", sizeof(name) + 1))
#define PUSH(col, v) \
    if (column_push(&(col), &(v), sizeof(v))) return -1

typedef struct {
    Column image, category, score, bbox, hw, c_start, c_end;
    Py_ssize_t n;
} Columns;

/* The records of [b, e): 1 if all of them read, 0 if one is not in the layout, -1 if memory ran out. Runs without
   the GIL (number tokens that need Python's conversion take it briefly). */
static int parse_loop(const char *b, const char *e, int masks, int boxes, long long base, Columns *out) {
    const char *p = skip_ws(b, e);
    for (;;) {
        int64_t iv, cv, h = 0, w = 0;
        double box[4] = {0, 0, 0, 0}, sc;
        const char *s = NULL, *q = NULL;
        int j;
        if (!(p = expect_char(p, e, '{'))) return 0;
        if (!KEY(p, "image_id") || !(p = parse_int(p, e, &iv))) return 0;
        if (!(p = expect_char(p, e, ',')) || !KEY(p, "category_id") || !(p = parse_int(p, e, &cv))) return 0;
        if (!(p = expect_char(p, e, ',')) || !KEY(p, "bbox") || !(p = expect_char(p, e, '['))) return 0;
        for (j = 0; j < 4; j++) {
            if (j && !(p = expect_char(p, e, ','))) return 0;
            if (!(p = parse_number(skip_ws(p, e), e, &box[j], boxes))) return 0;
        }
        if (!(p = expect_char(p, e, ']'))) return 0;
        if (!(p = expect_char(p, e, ',')) || !KEY(p, "score") || !(p = parse_number(p, e, &sc, 1))) return 0;
        if (masks) {
            if (!(p = expect_char(p, e, ',')) || !KEY(p, "segmentation") || !(p = expect_char(p, e, '{'))) return 0;
            if (!KEY(p, "size") || !(p = expect_char(p, e, '[')) || !(p = parse_int(skip_ws(p, e), e, &h))) return 0;
            if (!(p = expect_char(p, e, ',')) || !(p = parse_int(skip_ws(p, e), e, &w))) return 0;
            if (!(p = expect_char(p, e, ']')) || !(p = expect_char(p, e, ','))) return 0;
            if (!KEY(p, "counts") || !(p = parse_counts(p, e, &s, &q)) || !(p = expect_char(p, e, '}'))) return 0;
        }
        if (!(p = expect_char(p, e, '}'))) return 0;
        PUSH(out->image, iv);
        PUSH(out->category, cv);
        PUSH(out->score, sc);
        if (boxes)
            for (j = 0; j < 4; j++) PUSH(out->bbox, box[j]);
        if (masks == 1) {
            int64_t so = base + (s - b), eo = base + (q - b);
            PUSH(out->hw, h);
            PUSH(out->hw, w);
            PUSH(out->c_start, so);
            PUSH(out->c_end, eo);
        }
        out->n++;
        p = skip_ws(p, e);
        if (p == e) return 1; /* every byte read */
        if (*p != ',') return 0;
        p++;
    }
}

static int reserve(Columns *c, Py_ssize_t rows, int masks, int boxes) {
    Column *cols[] = {&c->image, &c->category, &c->score, &c->bbox, &c->hw, &c->c_start, &c->c_end};
    const Py_ssize_t size[] = {8, 8, 8, boxes ? 32 : 0, masks == 1 ? 16 : 0, masks == 1 ? 8 : 0, masks == 1 ? 8 : 0};
    for (int k = 0; k < 7; k++)
        if (rows > 0 && size[k]) {
            char *data = PyMem_RawMalloc((size_t)(rows * size[k]));
            if (!data) return -1;
            cols[k]->data = data;
            cols[k]->cap = rows * size[k];
        }
    return 0;
}

/* The tuple of columns (status 1), None (status 0) or the memory error (status -1); frees the columns. */
static PyObject *finish(Columns *c, int status, int masks, int boxes) {
    PyObject *result = NULL;
    if (status < 0) {
        PyErr_NoMemory();
    } else if (status == 0) {
        result = Py_None;
        Py_INCREF(Py_None);
    } else {
#define AS_BYTES(col) PyBytes_FromStringAndSize((col).data ? (col).data : "", (col).len)
#define NONE (Py_INCREF(Py_None), Py_None)
        result = Py_BuildValue("(nNNNNNNN)", c->n, AS_BYTES(c->image), AS_BYTES(c->category), AS_BYTES(c->score),
                               boxes ? AS_BYTES(c->bbox) : NONE, masks == 1 ? AS_BYTES(c->hw) : NONE,
                               masks == 1 ? AS_BYTES(c->c_start) : NONE, masks == 1 ? AS_BYTES(c->c_end) : NONE);
    }
    Column *all[] = {&c->image, &c->category, &c->score, &c->bbox, &c->hw, &c->c_start, &c->c_end};
    for (int k = 0; k < 7; k++) PyMem_RawFree(all[k]->data);
    return result;
}

static PyObject *parse_records(PyObject *self, PyObject *args) {
    Py_buffer view;
    int masks, boxes, status;
    long long base;
    Py_ssize_t rows = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ipL|n", &view, &masks, &boxes, &base, &rows)) return NULL;
    Columns c;
    memset(&c, 0, sizeof(c));
    Py_BEGIN_ALLOW_THREADS;
    status = reserve(&c, rows, masks, boxes);
    if (status == 0) status = parse_loop(view.buf, (const char *)view.buf + view.len, masks, boxes, base, &c);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    return finish(&c, status, masks, boxes);
}

/* The last `{"image_id"` in [lo, hi), or NULL. */
static const char *last_record_start(const char *lo, const char *hi) {
    static const char key[] = "{\"image_id\"";
    const size_t n = sizeof(key) - 1;
    for (const char *p = hi - (Py_ssize_t)n; p >= lo; p--)
        if (*p == '{' && memcmp(p, key, n) == 0) return p;
    return NULL;
}

/* parse_file's work without the GIL: 1 read, 0 not the layout, -1 no memory, -2 read error (errno). */
static int parse_fd(int fd, int masks, int boxes, Py_ssize_t block, Columns *c) {
    Py_ssize_t cap = 2 * block, have = 0, pos = 0;
    int first = 1, status = 1;
    char *buf = PyMem_RawMalloc((size_t)cap);
    if (!buf) return -1;
    for (;;) {
        if (have + block > cap) { /* a record longer than a block */
            char *grown = PyMem_RawRealloc(buf, (size_t)(2 * cap));
            if (!grown) {
                status = -1;
                break;
            }
            buf = grown, cap *= 2;
        }
        Py_ssize_t got = read(fd, buf + have, (size_t)block);
        if (got < 0) {
            if (errno == EINTR) continue;
            status = -2;
            break;
        }
        have += got;
        if (first) { /* the list's opening bracket */
            const char *p = skip_ws(buf, buf + have);
            if (p == buf + have && got) continue;
            if (p == buf + have || *p != '[') {
                status = 0;
                break;
            }
            pos = skip_ws(p + 1, buf + have) - buf, first = 0;
        }
        if (!got) { /* the end: the records, then the closing bracket */
            const char *e = buf + have;
            while (e > buf + pos && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
            if (e == buf + pos || e[-1] != ']') status = 0;
            else status = parse_loop(buf + pos, e - 1, masks, boxes, 0, c);
            break;
        }
        const char *cut = last_record_start(buf + pos + 1, buf + have), *e = cut;
        /* the records before the last start are complete; the separator dropped */
        while (e && e > buf + pos && (e[-1] == ',' || e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
            e--;
        if (!e || e <= buf + pos) continue; /* no complete record yet */
        status = parse_loop(buf + pos, e, masks, boxes, 0, c);
        if (status != 1) break;
        have -= cut - buf;
        memmove(buf, cut, (size_t)have);
        pos = 0;
    }
    PyMem_RawFree(buf);
    return status;
}

static PyObject *parse_file(PyObject *self, PyObject *args) {
    int fd, masks, boxes, status;
    Py_ssize_t block, rows = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "iipn|n", &fd, &masks, &boxes, &block, &rows)) return NULL;
    if (masks == 1 || block < 64) {
        PyErr_SetString(PyExc_ValueError, "parse_file keeps no masks (masks 0 or 2) and needs a block of >= 64 bytes");
        return NULL;
    }
    Columns c;
    memset(&c, 0, sizeof(c));
    Py_BEGIN_ALLOW_THREADS;
    status = reserve(&c, rows, masks, boxes);
    if (status == 0) status = parse_fd(fd, masks, boxes, block, &c);
    Py_END_ALLOW_THREADS;
    if (status == -2) {
        PyErr_SetFromErrno(PyExc_OSError);
        status = -3;
    }
    if (status == -3) {
        Py_XDECREF(finish(&c, 0, masks, boxes));
        return NULL;
    }
    return finish(&c, status, masks, boxes);
}

static PyMethodDef methods[] = {
    {"parse_records", parse_records, METH_VARARGS,
     "parse_records(buffer, masks, boxes, base) -> (n, image_id, category_id, score, bbox, hw, counts_start, "
     "counts_end) or None: Detectron2's results records as column bytes (see the module's source)."},
    {"parse_file", parse_file, METH_VARARGS,
     "parse_file(fd, masks, boxes, block) -> the same, for a whole file read from fd in blocks (masks 0 or 2)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_records", "Detectron2 results records to columns.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__records(void) { return PyModule_Create(&module); }
