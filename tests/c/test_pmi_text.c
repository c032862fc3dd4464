/* The PMI wires' text: escaping round-trips every byte; MPICH's process mapping
 * places ranks as MPICH does, and malformed mappings are refused. */
#include <stdlib.h>

#include "check.h"
#include "pm/pmi_text.h"

static void check_place(const char *mapping, int size, int rank, int node, int local,
                        int local_size, int nodes)
{
    int n = -9, l = -9, ls = -9, nn = -9;
    int rc = foehn_pmi_parse_mapping(mapping, size, rank, &n, &l, &ls, &nn);
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_INT(n, node);
        CHECK_INT(l, local);
        CHECK_INT(ls, local_size);
        CHECK_INT(nn, nodes);
    }
}

int main(void)
{
    unsigned char all[256], back[256];
    char text[3 * 256 + 1];
    size_t width = 0;
    for (int i = 0; i < 256; i++) {
        all[i] = (unsigned char)i;
        width += foehn_pmi_escaped_width((unsigned char)i);
    }
    size_t n = foehn_pmi_escape(all, sizeof all, text);
    CHECK_INT(n, width);
    CHECK(strchr(text, ' ') == NULL && strchr(text, ';') == NULL && strchr(text, '=') == NULL);
    size_t len = 0;
    CHECK_INT(foehn_pmi_unescape_append(text, back, &len, sizeof back), 0);
    CHECK_INT(len, 256);
    CHECK(memcmp(all, back, sizeof all) == 0);
    len = 0;
    CHECK_INT(foehn_pmi_unescape_append("a%2", back, &len, sizeof back), -1);
    len = 0;
    CHECK_INT(foehn_pmi_unescape_append("sp ace", back, &len, sizeof back), -1);
    len = 0;
    CHECK_INT(foehn_pmi_unescape_append("toolong", back, &len, 3), -1);

    /* srun -N2 -n4: two blocks of two. */
    check_place("(vector,(0,2,2))", 4, 0, 0, 0, 2, 2);
    check_place("(vector,(0,2,2))", 4, 3, 1, 1, 2, 2);
    /* srun -N2 -n3: 2 + 1. */
    check_place("(vector,(0,1,2),(1,1,1))", 3, 1, 0, 1, 2, 2);
    check_place("(vector,(0,1,2),(1,1,1))", 3, 2, 1, 0, 1, 2);
    /* One rank per node, reused cyclically: ranks 0..3 on nodes 0,1,0,1. */
    check_place("(vector,(0,2,1))", 4, 2, 0, 1, 2, 2);
    check_place("(vector,(0,2,1))", 4, 3, 1, 1, 2, 2);
    int a, b, c, d;
    const char *bad[] = {"", "garbage", "(vector,(0,2", "(vector,(0,x,2))", "(vector,(0,0,2))",
                         "(vector,(-1,2,2))", "(vector)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fprintf(stderr, "bad mapping \"%s\"\n", bad[i]);
        CHECK_INT(foehn_pmi_parse_mapping(bad[i], 4, 0, &a, &b, &c, &d), -1);
    }
    return check_summary("pmi_text");
}
