/*
 * ui_assets.h - the operator's page (ui/index.html), embedded in the binary.
 *
 * Defined in $(BUILD)/gen/ui_assets.c, which the Makefile generates from ui/index.html
 * with `xxd -i` (a build-time tool only: running tallyd needs nothing beside the binary).
 * Not NUL-terminated: use the length.
 */
#ifndef TALLY_HTTP_UI_ASSETS_H
#define TALLY_HTTP_UI_ASSETS_H

extern const unsigned char ui_index_html[];
extern const unsigned int ui_index_html_len;

#endif
