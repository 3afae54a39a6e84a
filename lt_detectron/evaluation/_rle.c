/* Compressed RLE masks (pycocotools' format) decoded once, then area, box and IoU from the runs.
 *
 * pycocotools decodes a mask's string again in every call (area, toBbox, iou); the LVIS evaluator needs all three
 * for every detection it matches. The arithmetic is pycocotools' own (maskApi.c: rleFrString, rleArea, rleToBbox
 * and rleIou's merge loop, iscrowd 0), so the numbers are its numbers.
 *
 * decode(buffer, starts, ends, hw, escaped) -> (runs, run_start, area, bbox, bad)
 *   Mask i is the string buffer[starts[i]:ends[i]] (escaped: JSON's `\\` stands for one backslash) of an image of
 *   hw[i] = (height, width). Returns bytes of: runs (uint32, all masks' runs), run_start (int64, n + 1 offsets into
 *   runs), area (float64), bbox (float64 [n, 4], x, y, w, h) and bad (uint8): 1 for a string that pycocotools would
 *   not decode to a mask of that size (a character outside its alphabet, a number cut off or out of range, runs
 *   that do not add up to height x width); its area and box are 0.
 * iou(runs_d, start_d, runs_g, start_g, d, g) -> float64 bytes
 *   IoU of mask d[e] (of the first set) with mask g[e] (of the second) for each entry e: intersection / union as
 *   pycocotools computes it (0 where the intersection is empty).
 */
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

/* One mask's string to runs (appended at *out, capacity checked by the caller: at most one run per character). */
static Py_ssize_t decode_one(const unsigned char *p, const unsigned char *e, int escaped, uint64_t hw_total,
                             uint32_t *out) {
    Py_ssize_t m = 0;
    uint64_t total = 0;
    while (p < e) {
        int64_t x = 0;
        int k = 0, more = 1;
        while (more) {
            if (p >= e || k >= 7) return -1; /* a number cut off, or wider than pycocotools' 32-bit counts */
            int ch = *p++;
            if (escaped && ch == '\\') {
                if (p >= e || *p != '\\') return -1;
                p++;
            }
            if (ch < 48 || ch > 111) return -1;
            int c = ch - 48;
            x |= (int64_t)(c & 0x1f) << (5 * k);
            more = c & 0x20;
            k++;
            if (!more && (c & 0x10)) x |= (int64_t)(UINT64_MAX << (5 * k)); /* sign extension */
        }
        if (m > 2) x += (int64_t)out[m - 2];
        if (x < 0 || x > (int64_t)UINT32_MAX) return -1;
        out[m++] = (uint32_t)x;
        total += (uint64_t)x;
        if (total > hw_total) return -1;
    }
    if (total != hw_total) return -1;
    return m;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *o_buf, *o_starts, *o_ends, *o_hw;
    int escaped;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOp", &o_buf, &o_starts, &o_ends, &o_hw, &escaped)) return NULL;
    Buf b[4];
    memset(b, 0, sizeof(b));
    PyObject *runs = NULL, *run_start = NULL, *area = NULL, *bbox = NULL, *bad = NULL, *result = NULL;
    if (take_buffer(o_buf, &b[0], 1, 0, "buffer") || take_buffer(o_starts, &b[1], 8, 0, "starts") ||
        take_buffer(o_ends, &b[2], 8, 0, "ends") || take_buffer(o_hw, &b[3], 8, 0, "hw"))
        goto done;
    Py_buffer *buf = &b[0].v, *bs = &b[1].v, *be = &b[2].v, *bhw = &b[3].v;
    Py_ssize_t n = bs->len / 8;
    if (be->len / 8 != n || bhw->len / 8 != 2 * n) {
        PyErr_SetString(PyExc_ValueError, "starts, ends and hw must describe the same number of masks");
        goto done;
    }
    const unsigned char *data = buf->buf;
    const int64_t *starts = bs->buf, *ends = be->buf, *hw = bhw->buf;
    Py_ssize_t chars = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (starts[i] < 0 || ends[i] < starts[i] || ends[i] > buf->len) {
            PyErr_Format(PyExc_ValueError, "mask %zd: [%lld, %lld) is outside the buffer", i, (long long)starts[i],
                         (long long)ends[i]);
            goto done;
        }
        chars += ends[i] - starts[i];
    }
    runs = PyBytes_FromStringAndSize(NULL, chars * 4);
    run_start = PyBytes_FromStringAndSize(NULL, (n + 1) * 8);
    area = PyBytes_FromStringAndSize(NULL, n * 8);
    bbox = PyBytes_FromStringAndSize(NULL, n * 32);
    bad = PyBytes_FromStringAndSize(NULL, n);
    if (!runs || !run_start || !area || !bbox || !bad) goto done;
    uint32_t *r = (uint32_t *)PyBytes_AS_STRING(runs);
    int64_t *rs = (int64_t *)PyBytes_AS_STRING(run_start);
    double *ar = (double *)PyBytes_AS_STRING(area), *bb = (double *)PyBytes_AS_STRING(bbox);
    char *bd = PyBytes_AS_STRING(bad);
    Py_ssize_t used = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t h = hw[2 * i], w = hw[2 * i + 1];
        Py_ssize_t m = -1;
        rs[i] = used;
        if (h > 0 && w > 0 && h <= UINT32_MAX && w <= UINT32_MAX)
            m = decode_one(data + starts[i], data + ends[i], escaped, (uint64_t)h * (uint64_t)w, r + used);
        bd[i] = m < 0;
        double *b = bb + 4 * i;
        b[0] = b[1] = b[2] = b[3] = 0;
        ar[i] = 0;
        if (m < 0) continue;
        const uint32_t *c = r + used;
        used += m;
        uint64_t a = 0;
        for (Py_ssize_t j = 1; j < m; j += 2) a += c[j];
        ar[i] = (double)a;
        /* rleToBbox: the pixel before each run's end (t = cc - j % 2) as column x, row y; (xc, yc) = cc's, kept by
           additions (a division only for a run of a column or more) */
        uint32_t uh = (uint32_t)h, uw = (uint32_t)w, xs = uw, ys = uh, xe = 0, ye = 0, xp = 0, xc = 0, yc = 0;
        Py_ssize_t mm = (m / 2) * 2;
        if (mm == 0) continue;
        for (Py_ssize_t j = 0; j < mm; j++) {
            uint32_t cnt = c[j], x, y;
            if (cnt >= uh) xc += cnt / uh, cnt %= uh;
            yc += cnt;
            if (yc >= uh) yc -= uh, xc++;
            if (j % 2 == 0) x = xc, y = yc;
            else if (yc) x = xc, y = yc - 1;
            else if (xc) x = xc - 1, y = uh - 1;
            else y = UINT32_MAX % uh, x = (UINT32_MAX - y) / uh; /* t = 0 - 1 wraps, as in pycocotools */
            if (j % 2 == 0) xp = x;
            else if (xp < x) ys = 0, ye = uh - 1;
            if (x < xs) xs = x;
            if (x > xe) xe = x;
            if (y < ys) ys = y;
            if (y > ye) ye = y;
        }
        b[0] = xs;
        b[2] = xe - xs + 1;
        b[1] = ys;
        b[3] = ye - ys + 1;
    }
    rs[n] = used;
    Py_END_ALLOW_THREADS;
    if (_PyBytes_Resize(&runs, used * 4) < 0) goto done;
    result = Py_BuildValue("(OOOOO)", runs, run_start, area, bbox, bad);
done:
    Py_XDECREF(runs);
    Py_XDECREF(run_start);
    Py_XDECREF(area);
    Py_XDECREF(bbox);
    Py_XDECREF(bad);
    release_buffers(b, 4);
    return result;
}

static PyObject *iou(PyObject *self, PyObject *args) {
    PyObject *o[6];
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    Buf b[6];
    memset(b, 0, sizeof(b));
    static const Py_ssize_t item[6] = {4, 8, 4, 8, 8, 8};
    static const char *name[6] = {"runs_d", "start_d", "runs_g", "start_g", "d", "g"};
    PyObject *out = NULL;
    for (int k = 0; k < 6; k++)
        if (take_buffer(o[k], &b[k], item[k], 0, name[k])) goto fail;
    const uint32_t *rd = b[0].v.buf, *rg = b[2].v.buf;
    const int64_t *sd = b[1].v.buf, *sg = b[3].v.buf, *d = b[4].v.buf, *g = b[5].v.buf;
    Py_ssize_t nd = b[1].v.len / 8 - 1, ng = b[3].v.len / 8 - 1, n = b[4].v.len / 8;
    if (b[5].v.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "d and g must have the same length");
        goto fail;
    }
    out = PyBytes_FromStringAndSize(NULL, n * 8);
    if (!out) goto fail;
    double *res = (double *)PyBytes_AS_STRING(out);
    for (Py_ssize_t e = 0; e < n; e++)
        if (d[e] < 0 || d[e] >= nd || g[e] < 0 || g[e] >= ng) {
            PyErr_Format(PyExc_IndexError, "entry %zd: mask index out of range", e);
            Py_CLEAR(out);
            goto fail;
        }
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t e = 0; e < n; e++) {
        const uint32_t *ca_ = rd + sd[d[e]], *cb_ = rg + sg[g[e]];
        Py_ssize_t ka = sd[d[e] + 1] - sd[d[e]], kb = sg[g[e] + 1] - sg[g[e]];
        if (!ka || !kb) {
            res[e] = 0;
            continue;
        }
        /* rleIou's merge of two run sequences */
        uint64_t inter = 0, uni = 0, ca = ca_[0], cb = cb_[0], c, ct = 1;
        Py_ssize_t a = 1, bi = 1;
        int va = 0, vb = 0;
        while (ct > 0) {
            c = ca < cb ? ca : cb;
            if (va || vb) {
                uni += c;
                if (va && vb) inter += c;
            }
            ct = 0;
            ca -= c;
            if (!ca && a < ka) ca = ca_[a++], va = !va;
            ct += ca;
            cb -= c;
            if (!cb && bi < kb) cb = cb_[bi++], vb = !vb;
            ct += cb;
        }
        res[e] = inter ? (double)inter / (double)uni : 0.0;
    }
    Py_END_ALLOW_THREADS;
fail:
    release_buffers(b, 6);
    return out;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, "decode(buffer, starts, ends, hw, escaped) -> (runs, run_start, area, bbox, bad)"},
    {"iou", iou, METH_VARARGS, "iou(runs_d, start_d, runs_g, start_g, d, g) -> float64 bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rle", "Compressed RLE masks: decode once, then area, box, IoU.",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rle(void) { return PyModule_Create(&module); }
