/* The kernel of cpu_kernel.c as a CPython extension function, `delta_add(blocks, y, x, wt, N, T)` (six
   integers: the bound struct's address, the three tensors' data pointers, 0 for no weights, the
   token counts). A decoding step calls it once per routed layer: through ctypes a call costs several
   thousand instructions (argument objects, libffi), here a few hundred (BENCHMARKS.md §7.6).
   seta/models/cpu_kernel.py builds it where Python's headers are installed, else loads cpu_kernel.c
   alone with ctypes; the arguments are checked there (`fused_delta`), not here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "cpu_kernel.c"

static PyObject *delta_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "delta_add(blocks, y, x, wt, N, T) takes 6 integers");
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(args[0]), *y = PyLong_AsVoidPtr(args[1]), *x = PyLong_AsVoidPtr(args[2]);
    void *wt = PyLong_AsVoidPtr(args[3]);
    long long n = PyLong_AsLongLong(args[4]), t = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (!p || !y || !x || n < 0 || t <= 0 || n % t) {
        PyErr_SetString(PyExc_ValueError, "delta_add: null pointer, or N not a multiple of T > 0");
        return NULL;
    }
    if (n <= 64) {  /* a decoding step: microseconds, not worth releasing the GIL */
        seta_delta_add_f32((const seta_blocks *)p, (float *)y, (const float *)x, (const float *)wt, n, t);
    } else {  /* a prefill: other Python threads run meanwhile, as through ctypes */
        Py_BEGIN_ALLOW_THREADS
        seta_delta_add_f32((const seta_blocks *)p, (float *)y, (const float *)x, (const float *)wt, n, t);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"delta_add", (PyCFunction)(void (*)(void))delta_add, METH_FASTCALL, "y += the routed blocks' delta of x"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "seta_cpu_kernel", NULL, -1, methods};

PyMODINIT_FUNC PyInit_seta_cpu_kernel(void) { return PyModule_Create(&module); }
