# knooppunt_proto_library(<target> IMPORT_ROOT <dir> PROTOS <files...> [GRPC] [DEPS <targets...>])
# Generates C++ (and gRPC stubs with GRPC) for the .proto files, paths relative to IMPORT_ROOT,
# into ${CMAKE_BINARY_DIR}/gen, and a static library <target> that consumers link.
set(KNOOPPUNT_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${KNOOPPUNT_GEN_DIR})
get_target_property(KNOOPPUNT_GRPC_CPP_PLUGIN gRPC::grpc_cpp_plugin LOCATION)

function(knooppunt_proto_library target)
  cmake_parse_arguments(ARG "GRPC" "IMPORT_ROOT" "PROTOS;DEPS" ${ARGN})
  if(NOT ARG_IMPORT_ROOT)
    set(ARG_IMPORT_ROOT ${PROJECT_SOURCE_DIR}/proto)
  endif()
  set(srcs)
  set(hdrs)
  foreach(proto ${ARG_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" base ${proto})
    list(APPEND srcs ${KNOOPPUNT_GEN_DIR}/${base}.pb.cc)
    list(APPEND hdrs ${KNOOPPUNT_GEN_DIR}/${base}.pb.h)
    if(ARG_GRPC)
      list(APPEND srcs ${KNOOPPUNT_GEN_DIR}/${base}.grpc.pb.cc)
      list(APPEND hdrs ${KNOOPPUNT_GEN_DIR}/${base}.grpc.pb.h)
    endif()
  endforeach()
  set(abs_protos)
  foreach(proto ${ARG_PROTOS})
    list(APPEND abs_protos ${ARG_IMPORT_ROOT}/${proto})
  endforeach()
  set(grpc_args)
  if(ARG_GRPC)
    set(grpc_args --grpc_out=${KNOOPPUNT_GEN_DIR} --plugin=protoc-gen-grpc=${KNOOPPUNT_GRPC_CPP_PLUGIN})
  endif()
  add_custom_command(
    OUTPUT ${srcs} ${hdrs}
    COMMAND protobuf::protoc
      -I ${ARG_IMPORT_ROOT} -I ${PROJECT_SOURCE_DIR}/proto
      --cpp_out=${KNOOPPUNT_GEN_DIR} ${grpc_args} ${ARG_PROTOS}
    WORKING_DIRECTORY ${ARG_IMPORT_ROOT}
    DEPENDS ${abs_protos} protobuf::protoc
    COMMENT "protoc ${target}"
    VERBATIM)
  add_library(${target} STATIC ${srcs} ${hdrs})
  target_include_directories(${target} PUBLIC ${KNOOPPUNT_GEN_DIR})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
  if(ARG_GRPC)
    target_link_libraries(${target} PUBLIC gRPC::grpc++)
  endif()
endfunction()
