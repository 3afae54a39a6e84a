/* lvis-api's per-image matching and per-class accumulation (lvis/eval.py: evaluate_img, accumulate), as loops.
 *
 * match(iou, e_start, det_pair, pair_g, pair_gstart, gt_ig, gt_id_zero, thrs, out)
 *   Detections of a pair (an image and a class) are consecutive, in score order; detection i's IoUs with its pair's
 *   ground truth (json order) are iou[e_start[i] + j]. For each area range a and threshold t, each detection takes,
 *   among the ground truth not yet taken with IoU >= the threshold (raised to each candidate's IoU as it goes, so
 *   the last of equal IoUs wins), the first of highest IoU in lvis-api's order: ground truth not ignored in that area
 *   range first, the ignored only if none of the others qualifies. out[i, a, t] (int8): 0 unmatched (or matched to a
 *   ground truth whose id is 0, which lvis-api stores as no match), 1 matched, 2 matched to an ignored one.
 * accumulate(state, area_ignored, bounds, num_gt, rec_thrs, precision, recall)
 *   Class c's detections are state[bounds[c]:bounds[c + 1]] ([n, A, T] int8, in lvis-api's accumulate order);
 *   area_ignored [n, A] marks unmatched detections to ignore. Writes precision [T, R, k, A] and recall [T, k, A]
 *   (float64, left as they are where num_gt is 0): cumulative true and false positives, precision made
 *   non-increasing from the right, then the precision where recall first reaches each threshold (0 past the end).
 * Both run without the GIL.
 */
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

enum { UNMATCHED = 0, TP = 1, IGNORED = 2 };

static PyObject *match(PyObject *self, PyObject *args) {
    enum { N = 9 };
    PyObject *o[N];
    Buf b[N];
    static const Py_ssize_t item[N] = {8, 8, 8, 8, 8, 1, 1, 8, 1};
    static const char *name[N] = {"iou", "e_start", "det_pair", "pair_g", "pair_gstart", "gt_ig", "gt_id_zero",
                                  "thrs", "out"};
    (void)self;
    memset(b, 0, sizeof(b));
    if (!PyArg_ParseTuple(args, "OOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8]))
        return NULL;
    for (int k = 0; k < N; k++)
        if (take_buffer(o[k], &b[k], item[k], k == N - 1, name[k])) goto fail;
    const double *iou = b[0].v.buf, *thrs = b[7].v.buf;
    const int64_t *e_start = b[1].v.buf, *det_pair = b[2].v.buf, *pair_g = b[3].v.buf, *pair_gstart = b[4].v.buf;
    const uint8_t *gt_ig = b[5].v.buf, *gt_id_zero = b[6].v.buf;
    int8_t *out = b[8].v.buf;
    Py_ssize_t D = b[1].v.len / 8, P = b[3].v.len / 8, G = b[6].v.len, T = b[7].v.len / 8;
    Py_ssize_t A = G ? b[5].v.len / G : 0, max_g = 0;
    if (b[2].v.len / 8 != D || b[4].v.len / 8 != P || (G && b[5].v.len != G * A) || b[8].v.len < D * A * T) {
        PyErr_SetString(PyExc_ValueError, "match: inconsistent array sizes");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < D; i++)
        if (det_pair[i] < 0 || det_pair[i] >= P || (i && det_pair[i] < det_pair[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "match: det_pair must be non-decreasing pair indices");
            goto fail;
        }
    for (Py_ssize_t p = 0; p < P; p++) {
        if (pair_g[p] < 0 || pair_gstart[p] < 0 || pair_gstart[p] + pair_g[p] > G) {
            PyErr_SetString(PyExc_ValueError, "match: a pair's ground truth is outside gt_ig");
            goto fail;
        }
        if (pair_g[p] > max_g) max_g = pair_g[p];
    }
    Py_ssize_t *gorder = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(max_g + 1));
    uint8_t *taken = PyMem_Malloc((size_t)(T * (max_g + 1)));
    if (!gorder || !taken) {
        PyMem_Free(gorder);
        PyMem_Free(taken);
        PyErr_NoMemory();
        goto fail;
    }
    memset(out, UNMATCHED, (size_t)(D * A * T));
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t lo = 0, hi; lo < D; lo = hi) {
        Py_ssize_t p = det_pair[lo], g0 = pair_gstart[p], ng = pair_g[p];
        for (hi = lo; hi < D && det_pair[hi] == p; hi++) {
        }
        for (Py_ssize_t a = 0; a < A; a++) {
            Py_ssize_t m = 0, first_ignored;
            for (Py_ssize_t j = 0; j < ng; j++) /* lvis-api sorts the ground truth by ignore flag, stably */
                if (!gt_ig[(g0 + j) * A + a]) gorder[m++] = j;
            first_ignored = m;
            for (Py_ssize_t j = 0; j < ng; j++)
                if (gt_ig[(g0 + j) * A + a]) gorder[m++] = j;
            memset(taken, 0, (size_t)(T * ng));
            for (Py_ssize_t i = lo; i < hi; i++) {
                const double *row = iou + e_start[i];
                for (Py_ssize_t t = 0; t < T; t++) {
                    double best = thrs[t];
                    Py_ssize_t hit = -1;
                    for (Py_ssize_t q = 0; q < ng; q++) {
                        Py_ssize_t j = gorder[q];
                        if (taken[t * ng + j]) continue;
                        if (hit >= 0 && q >= first_ignored && !gt_ig[(g0 + hit) * A + a]) break;
                        if (row[j] < best) continue;
                        best = row[j];
                        hit = j;
                    }
                    if (hit < 0) continue;
                    taken[t * ng + hit] = 1;
                    out[(i * A + a) * T + t] = gt_ig[(g0 + hit) * A + a] ? IGNORED
                                               : gt_id_zero[g0 + hit]  ? UNMATCHED
                                                                       : TP;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS;
    PyMem_Free(gorder);
    PyMem_Free(taken);
    release_buffers(b, N);
    Py_RETURN_NONE;
fail:
    release_buffers(b, N);
    return NULL;
}

static PyObject *accumulate(PyObject *self, PyObject *args) {
    enum { N = 7 };
    PyObject *o[N];
    Buf b[N];
    static const Py_ssize_t item[N] = {1, 1, 8, 8, 8, 8, 8};
    static const char *name[N] = {"state", "area_ignored", "bounds", "num_gt", "rec_thrs", "precision", "recall"};
    (void)self;
    memset(b, 0, sizeof(b));
    if (!PyArg_ParseTuple(args, "OOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6])) return NULL;
    for (int k = 0; k < N; k++)
        if (take_buffer(o[k], &b[k], item[k], k >= 5, name[k])) goto fail;
    const int8_t *state = b[0].v.buf;
    const uint8_t *area_ig = b[1].v.buf;
    const int64_t *bounds = b[2].v.buf;
    const double *num_gt = b[3].v.buf, *rec = b[4].v.buf;
    double *precision = b[5].v.buf, *recall = b[6].v.buf;
    Py_ssize_t K = b[2].v.len / 8 - 1, R = b[4].v.len / 8;
    if (K <= 0) {
        release_buffers(b, N);
        Py_RETURN_NONE;
    }
    Py_ssize_t A = b[3].v.len / 8 / K, T = A ? b[6].v.len / 8 / (K * A) : 0, n_all = bounds[K];
    if (b[3].v.len != K * A * 8 || b[6].v.len != T * K * A * 8 || b[5].v.len != T * R * K * A * 8 ||
        b[0].v.len != n_all * A * T || b[1].v.len != n_all * A) {
        PyErr_SetString(PyExc_ValueError,
                        "accumulate: state [n, A, T], area_ignored [n, A], num_gt [k, A], precision [T, R, k, A] and "
                        "recall [T, k, A] must agree");
        goto fail;
    }
    Py_ssize_t longest = 0;
    for (Py_ssize_t c = 0; c < K; c++) {
        if (bounds[c + 1] < bounds[c] || bounds[c] < 0) {
            PyErr_SetString(PyExc_ValueError, "accumulate: bounds must be non-decreasing");
            goto fail;
        }
        if (bounds[c + 1] - bounds[c] > longest) longest = bounds[c + 1] - bounds[c];
    }
    double *rc = PyMem_Malloc(sizeof(double) * (size_t)(2 * longest + 1)), *pr = rc + longest;
    if (!rc) {
        PyErr_NoMemory();
        goto fail;
    }
    const double eps = 2.220446049250313e-16; /* np.spacing(1) */
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t c = 0; c < K; c++) {
        Py_ssize_t lo = bounds[c], n = bounds[c + 1] - lo;
        for (Py_ssize_t a = 0; a < A; a++) {
            double ng = num_gt[c * A + a];
            if (!(ng > 0)) continue;
            for (Py_ssize_t t = 0; t < T; t++) {
                double *prec = precision + ((t * R) * K + c) * A + a; /* [t, r, c, a]: stride K * A over r */
                if (n == 0) {
                    recall[(t * K + c) * A + a] = 0.0;
                    for (Py_ssize_t r = 0; r < R; r++) prec[r * K * A] = 0.0;
                    continue;
                }
                int64_t tp = 0, fp = 0;
                for (Py_ssize_t i = 0; i < n; i++) {
                    int8_t s = state[((lo + i) * A + a) * T + t];
                    if (s == TP) tp++;
                    else if (s == UNMATCHED && !area_ig[(lo + i) * A + a]) fp++;
                    rc[i] = (double)tp / ng;
                    pr[i] = (double)tp / ((double)fp + (double)tp + eps);
                }
                recall[(t * K + c) * A + a] = rc[n - 1];
                for (Py_ssize_t i = n - 1; i > 0; i--)
                    if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
                Py_ssize_t i = 0;
                for (Py_ssize_t r = 0; r < R; r++) { /* searchsorted(rc, rec_thrs, 'left') */
                    while (i < n && rc[i] < rec[r]) i++;
                    prec[r * K * A] = i < n ? pr[i] : 0.0;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS;
    PyMem_Free(rc);
    release_buffers(b, N);
    Py_RETURN_NONE;
fail:
    release_buffers(b, N);
    return NULL;
}

static PyMethodDef methods[] = {
    {"match", match, METH_VARARGS,
     "match(iou, e_start, det_pair, pair_g, pair_gstart, gt_ig, gt_id_zero, thrs, out): lvis-api's greedy matching"},
    {"accumulate", accumulate, METH_VARARGS,
     "accumulate(state, area_ignored, bounds, num_gt, rec_thrs, precision, recall): lvis-api's accumulate"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_matching", "lvis-api's matching and accumulation.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__matching(void) { return PyModule_Create(&module); }
