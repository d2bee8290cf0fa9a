# Install rules and the Debian package (CPack), included from the top-level CMakeLists.txt.
#   tools/package.sh        configure (Release), build, cpack -> knooppunt_<version>-1_<arch>.deb
# The package holds the binaries (/usr/bin), the example configuration (/etc/knooppunt,
# conffiles), the systemd unit and the documentation; its postinst creates the system user
# `knooppunt`, the directories with their permissions and the audit keys
# (deploy/debian/postinst). Absolute destinations (/etc, /lib/systemd) are meant for the
# package: `cmake --install` with another prefix writes them to the real /etc too. The
# configuration files hold no secrets (0644); /etc/knooppunt itself is 0750 root:knooppunt
# (postinst), the key directories 0700 knooppunt.

install(TARGETS knooppunt-gateway knooppunt-policy knooppunt-audit knooppunt-pki
                knooppunt-admin knooppunt-health
        RUNTIME DESTINATION bin)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/config/gateway.yaml
              ${PROJECT_SOURCE_DIR}/deploy/config/registry.yaml
        DESTINATION /etc/knooppunt)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/config/agreements/README
        DESTINATION /etc/knooppunt/agreements)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/knooppunt-gateway.service
        DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/SECURITY.md
              ${PROJECT_SOURCE_DIR}/docs/operations.md
        DESTINATION share/doc/knooppunt)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME knooppunt)
set(CPACK_PACKAGE_VENDOR "Knooppunt")
set(CPACK_PACKAGE_CONTACT "Knooppunt maintainers <beheer@knooppunt.invalid>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "mTLS data-exchange gateway for Dutch municipalities")
set(CPACK_PACKAGE_DESCRIPTION
  "Knooppunt routes envelopes between organisations identified by the OIN in their client \
certificate, enforces data-sharing agreements per message type, stores meldingen durably and \
records every decision in a tamper-evident audit log. Includes knooppunt-gateway and the \
operator tools knooppunt-policy, knooppunt-audit, knooppunt-pki, knooppunt-admin and \
knooppunt-health.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared-library dependencies come from dpkg-shlibdeps (libgrpc++, libprotobuf, yaml-cpp, ...).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# procps: /bin/kill for the unit's ExecReload (not in a minimal Debian).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
# sqlite3: online backups of the WAL databases (docs/operations.md).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "sqlite3")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
  ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
  ${PROJECT_SOURCE_DIR}/deploy/debian/postrm
  ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
