/* Buffers of the evaluator's C extensions: numpy arrays and bytes taken as flat, C-contiguous runs of items. */
#ifndef LT_DETECTRON_BUFFERS_H
#define LT_DETECTRON_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    Py_buffer v;
    int held;
} Buf;

/* obj's buffer (writable if asked), which must hold a whole number of `item`-byte items; -1 with the error set. */
static int take_buffer(PyObject *obj, Buf *b, Py_ssize_t item, int writable, const char *name) {
    if (PyObject_GetBuffer(obj, &b->v, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    b->held = 1;
    if (b->v.len % item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items", name, b->v.len, item);
        return -1;
    }
    return 0;
}

static void release_buffers(Buf *b, int n) {
    for (int k = 0; k < n; k++)
        if (b[k].held) PyBuffer_Release(&b[k].v), b[k].held = 0;
}

#endif
