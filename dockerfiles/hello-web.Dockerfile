# Stage 1: build the site with the recipe's components.
FROM {{{ imagebuilder:parentImage }}} AS site
{{{ imagebuilder:environments }}}
{{{ imagebuilder:components }}}

# Stage 2: serve it, as an unprivileged user.
FROM {{{ imagebuilder:parentImage }}}
COPY --from=site /site/ /www/
EXPOSE 8080
USER nobody
CMD ["/bin/busybox", "httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
