/* Imported UIDLs in a maildrop's listing (see imported_uidls.h): applied
 * to a Maildir's listing, and kept apart from tpops's own UIDLs. */
#include <stdlib.h>
#include <string.h>

#include "imported_uidls.h"
#include "log.h"
#include "maildir.h"
#include "maildrop.h"
#include "xalloc.h"

/* msgs[i].name is "new/FILE" or "cur/FILE" */
#define SUBDIR_LEN 4

static size_t hash_of(const char *s)
{
	size_t h = 14695981039346656037u; /* FNV-1a */
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h;
}

void maildrop_keep_uidls_apart(struct maildrop *md)
{
	size_t imported = 0;
	for (size_t i = 0; i < md->count; i++)
		imported += md->msgs[i].imported_uidl;
	if (imported == 0 || imported == md->count)
		return;
	size_t size = 16;
	while (size < 2 * imported)
		size *= 2;
	const char **table = xcalloc(size, sizeof *table);
	for (size_t i = 0; i < md->count; i++) {
		if (!md->msgs[i].imported_uidl)
			continue;
		size_t j = hash_of(md->msgs[i].uidl) & (size - 1);
		while (table[j] != NULL && strcmp(table[j], md->msgs[i].uidl) != 0)
			j = (j + 1) & (size - 1);
		table[j] = md->msgs[i].uidl;
	}
	for (size_t i = 0; i < md->count; i++) {
		struct maildrop_msg *m = &md->msgs[i];
		if (m->imported_uidl)
			continue;
		size_t j = hash_of(m->uidl) & (size - 1);
		while (table[j] != NULL && strcmp(table[j], m->uidl) != 0)
			j = (j + 1) & (size - 1);
		if (table[j] != NULL) {
			char own[POP3_MAX_UIDL + 1];
			memcpy(own, m->uidl, sizeof own);
			imported_uidl_avoid(own, m->uidl);
		}
	}
	free(table);
}

struct ranked {
	size_t order; /* of the imported entry; SIZE_MAX: none */
	size_t index;
};

static int compare_ranked(const void *pa, const void *pb)
{
	const struct ranked *a = pa, *b = pb;
	if (a->order != b->order)
		return a->order < b->order ? -1 : 1;
	return (a->index > b->index) - (a->index < b->index);
}

void maildrop_maildir_imported(struct maildrop *md, int maildir_fd, const char *path)
{
	struct imported_uidls u;
	char err[512];
	if (imported_uidls_load(maildir_fd, &u, err, sizeof err) != 0) {
		log_warn("Maildir %s: imported UIDLs not read, those messages are listed with "
			 "their own UIDLs: %s",
			 path, err);
		return;
	}
	if (u.bad_line != 0)
		log_warn("Maildir %s: %s is damaged at line %zu; the lines after it are ignored",
			 path, IMPORTED_UIDLS_FILE, u.bad_line);
	if (u.count == 0) {
		imported_uidls_free(&u);
		return;
	}
	struct ranked *rank = xcalloc(md->count ? md->count : 1, sizeof *rank);
	size_t found = 0;
	for (size_t i = 0; i < md->count; i++) {
		struct maildrop_msg *m = &md->msgs[i];
		const char *file = m->name + SUBDIR_LEN;
		const struct imported_uidl *e =
			imported_uidls_find(&u, file, maildir_base_length(file));
		rank[i] = (struct ranked){.order = SIZE_MAX, .index = i};
		if (e == NULL)
			continue;
		memcpy(m->uidl, e->uidl, e->uidl_len);
		m->uidl[e->uidl_len] = '\0';
		m->imported_uidl = true;
		rank[i].order = e->order;
		found++;
	}
	if (found > 0) {
		qsort(rank, md->count, sizeof *rank, compare_ranked);
		struct maildrop_msg *sorted = xcalloc(md->count, sizeof *sorted);
		for (size_t i = 0; i < md->count; i++)
			sorted[i] = md->msgs[rank[i].index];
		memcpy(md->msgs, sorted, md->count * sizeof *sorted);
		free(sorted);
		maildrop_keep_uidls_apart(md);
	}
	free(rank);
	imported_uidls_free(&u);
}
