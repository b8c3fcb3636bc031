/* Code for tests/test_x86.py: vector loops for SSE, AVX2 and AVX-512 (target attributes), 16-bit
   immediates, 64-bit constants, byte tests, a jump table, x87, TLS, atomics: many encodings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <setjmp.h>

#define N 1024
float fa[N], fb[N], fc[N];
double da[N], db[N];
int32_t ia[N], ib[N];
int16_t sa[N];
int8_t ca[N];
uint64_t big = 0x1122334455667788ull;
static jmp_buf jb;

__attribute__((target("avx512f"))) void saxpy512(float a) { for (int i = 0; i < N; i++) fc[i] = a * fa[i] + fb[i]; }
__attribute__((target("avx512f,avx512bw,avx512vl"))) void bytes512(int8_t k) { for (int i = 0; i < N; i++) ca[i] = ca[i] > k ? ca[i] - k : ca[i] + k; }
__attribute__((target("avx512f"))) int64_t sum512(const int32_t *p, int n) { int64_t s = 0; for (int i = 0; i < n; i++) s += p[i] * (int64_t)p[i]; return s; }
__attribute__((target("avx512f"))) void gather512(const int32_t *idx) { for (int i = 0; i < N; i++) fc[i] = fa[idx[i] & (N - 1)]; }
__attribute__((target("avx2,fma"))) void saxpy256(float a) { for (int i = 0; i < N; i++) fc[i] = fmaf(a, fa[i], fb[i]); }
__attribute__((target("avx2"))) void shuffle256(void) { for (int i = 0; i < N; i += 2) { int32_t t = ia[i]; ia[i] = ib[i + 1]; ib[i + 1] = t; } }
__attribute__((target("avx2,bmi2"))) uint64_t bits(uint64_t x, uint64_t m, unsigned s) { return (x << s) ^ (x >> (s & 7)) ^ (m & ~x); }
__attribute__((target("sse4.2"))) double dot(void) { double s = 0; for (int i = 0; i < N; i++) s += da[i] * db[i]; return s; }
__attribute__((target("sse4.2"))) unsigned crc(const char *p) { unsigned c = 0; while (*p) c = __builtin_ia32_crc32qi(c, *p++); return c; }
__attribute__((target("popcnt,lzcnt"))) int pops(uint64_t x) { return __builtin_popcountll(x) + __builtin_clzll(x | 1) + __builtin_ctzll(x | 2); }
void shorts(int16_t v) { for (int i = 0; i < N; i++) sa[i] = (int16_t)(sa[i] * v + 0x1234); }
int16_t short_ops(int16_t *p) { p[0] += 0x1234; p[1] &= 0x7ff; p[2] ^= 3; return p[0] * 1000; }
int tests(uint8_t *p, uint32_t x) { return (p[3] & 0x40) ? 1 : (x & 0x100000) ? 2 : (p[1] & 1) ? 3 : 4; }
uint64_t consts(uint64_t x) { return x * 0x123456789abcdefull + big - 0x7fffffffffffull; }
int sw(int x) {
    switch (x) { case 0: return 11; case 1: return 22; case 2: return 35; case 3: return 47; case 4: return 51;
                 case 5: return 64; case 6: return 79; case 7: return 81; case 8: return 93; default: return -1; }
}
long double ld(long double x) { return x * 3.0L + sinl(x); }
double trig(double x) { return sin(x) * cos(x) + sqrt(fabs(x)) + floor(x) + pow(x, 2.5); }
int recur(int n) { return n < 2 ? n : recur(n - 1) + recur(n - 2); }
void jumper(int v) { if (v) longjmp(jb, v); }
int vla(int n) { int a[n]; for (int i = 0; i < n; i++) a[i] = i * i; return a[n / 2]; }
int divs(int64_t a, int64_t b, uint32_t c, uint32_t d) { return (int)(a / b + a % b + c / d + c % d); }
void copy(char *d, const char *s, size_t n) { memcpy(d, s, n); memset(d + n, 0, 16); }
static __thread int tls_counter;
int tls_bump(void) { return ++tls_counter; }
uint8_t rot(uint8_t x, int s) { return (uint8_t)((x << s) | (x >> (8 - s))); }
int atom(int *p) { return __atomic_add_fetch(p, 5, __ATOMIC_SEQ_CST) + __sync_val_compare_and_swap(p, 3, 4); }
__int128 wide(__int128 a, __int128 b) { return a * b + (a >> 3); }
int main(int argc, char **argv) {
    if (setjmp(jb)) return 1;
    for (int i = 0; i < N; i++) { fa[i] = i; fb[i] = 2 * i; ia[i] = i; ib[i] = -i; da[i] = i; db[i] = 1.0 / (i + 1); }
    saxpy256(2.0f); shuffle256(); shorts((int16_t)argc);
    printf("%f %d %d %llu %d %Lf %f %d %d %d\n", dot(), sw(argc), pops(argc), (unsigned long long)consts(argc),
           tests((uint8_t *)argv[0], argc), ld(argc), trig(argc), recur(10), vla(argc + 4), divs(argc, 3, 7, 2));
    jumper(0);
    return tls_bump() + atom(&argc) + (int)wide(argc, 3) + rot(argc, 3) + crc(argv[0]) + (int)bits(argc, 3, 2);
}
