/* Text on the PMI wires (PMI-1 and PMI-2 carry only text): the escaping that lets
 * Foehn's byte values through, and MPICH's process-mapping grammar. */
#ifndef FOEHN_PM_PMI_TEXT_H
#define FOEHN_PM_PMI_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes that travel as themselves: [A-Za-z0-9._:/@+-]; every other byte is %XX. */
bool foehn_pmi_plain_byte(unsigned char c);
/* 1 for a plain byte, 3 for an escaped one. */
size_t foehn_pmi_escaped_width(unsigned char c);
/* Escapes v[0..n) into out (room for 3n+1 bytes); returns the length written. */
size_t foehn_pmi_escape(const unsigned char *v, size_t n, char *out);
/* Appends the unescaped s to out[*len..cap); -1 when s is no escaped text or does
 * not fit. */
int foehn_pmi_unescape_append(const char *s, unsigned char *out, size_t *len, size_t cap);

/* Parses "(vector,(node,nodes,ranks_per_node),...)" (MPICH's PMI_process_mapping;
 * blocks are reused cyclically until every rank has a node, as MPICH reads it)
 * into rank's node, its place and count there, and the number of nodes.
 * 0 on success, -1 when s is malformed or does not place every rank. */
int foehn_pmi_parse_mapping(const char *s, int size, int rank, int *node_index, int *local_rank,
                            int *local_size, int *num_nodes);

#endif
