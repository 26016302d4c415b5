# CUDA addon build rules, included from CMakeLists.txt unless -DVWLMM_CUDA=off.
#   vwlmm_cuda.node: native/napi/addon_cuda.cc + native/cuda/*.cu + native/cuda/engine/*.cu (engine ops), static
#   cudart, cuBLAS (shared), written to ${CMAKE_LIBRARY_OUTPUT_DIRECTORY}/cuda (build/Release/cuda under cmake-js).
# Built when nvcc is found (check_language) AND cuBLAS is found: first in VWLMM_CUBLAS_ROOT (env or cache; a folder
# with include/cublas_v2.h and lib/libcublas.so or lib/libcublas.so.<major>, e.g. the nvidia-cublas wheel's
# nvidia/cu13, which ships only the versioned name), then in the CUDA toolkit (CUDA::cublas).
# VWLMM_CUDA=auto skips the addon with a STATUS line saying why; VWLMM_CUDA=on makes that a hard error.
# Architectures: env VWLMM_CUDA_ARCHS (default "80;90"). The CPU target `vwlmm` never links any of this.

set(_vw_cuda_skip "")

function(_vw_cuda_unavailable reason)
  if(VWLMM_CUDA STREQUAL "on")
    message(FATAL_ERROR "vwlmm: VWLMM_CUDA=on but the CUDA addon cannot be built: ${reason}")
  endif()
  message(STATUS "vwlmm: CUDA addon not built: ${reason}")
endfunction()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  set(_vw_cuda_skip "nvcc not found (install the CUDA toolkit or put nvcc on PATH / set CUDACXX)")
endif()

if(NOT _vw_cuda_skip)
  # Must be set before enable_language(CUDA), which would otherwise pick the compiler's default.
  if(NOT "$ENV{VWLMM_CUDA_ARCHS}" STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES "$ENV{VWLMM_CUDA_ARCHS}")
  elseif(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit QUIET)
  if(NOT CUDAToolkit_FOUND)
    set(_vw_cuda_skip "nvcc found (${CMAKE_CUDA_COMPILER}) but not its toolkit (CUDAToolkit package)")
  endif()
endif()

# cuBLAS: VWLMM_CUBLAS_ROOT first, then the toolkit. The root is a cache entry seeded (and overridden) by
# the environment variable, so a later reconfigure without it (ninja re-running cmake, a plain
# `npm run build:native`) keeps the CUDA addon; -DVWLMM_CUBLAS_ROOT= (empty) forgets it. The find results
# are re-searched on every configure so a changed root takes effect.
set(VWLMM_CUBLAS_ROOT "" CACHE PATH "cuBLAS folder with include/cublas_v2.h and lib/libcublas.so* (env VWLMM_CUBLAS_ROOT overrides)")
if(NOT "$ENV{VWLMM_CUBLAS_ROOT}" STREQUAL "")
  set(VWLMM_CUBLAS_ROOT "$ENV{VWLMM_CUBLAS_ROOT}" CACHE PATH "cuBLAS folder with include/cublas_v2.h and lib/libcublas.so* (env VWLMM_CUBLAS_ROOT overrides)" FORCE)
endif()
set(_vw_cublas_lib "")
set(_vw_cublas_inc "")
set(_vw_cublas_from "")
if(NOT _vw_cuda_skip)
  set(_vw_cublas_root "${VWLMM_CUBLAS_ROOT}")
  unset(VWLMM_CUBLAS_INCLUDE_DIR CACHE)
  unset(VWLMM_CUBLAS_LIBRARY CACHE)
  if(_vw_cublas_root)
    find_path(VWLMM_CUBLAS_INCLUDE_DIR cublas_v2.h PATHS "${_vw_cublas_root}/include" NO_DEFAULT_PATH)
    find_library(VWLMM_CUBLAS_LIBRARY NAMES cublas PATHS "${_vw_cublas_root}/lib" "${_vw_cublas_root}/lib64" NO_DEFAULT_PATH)
    if(NOT VWLMM_CUBLAS_LIBRARY)
      # A wheel ships only the versioned name (libcublas.so.<major>), whichever major that is.
      file(GLOB _vw_cublas_versioned "${_vw_cublas_root}/lib/libcublas.so.[0-9]*" "${_vw_cublas_root}/lib64/libcublas.so.[0-9]*")
      if(_vw_cublas_versioned)
        list(SORT _vw_cublas_versioned COMPARE NATURAL ORDER DESCENDING)  # the newest major where several are
        list(GET _vw_cublas_versioned 0 _vw_cublas_first)
        set(VWLMM_CUBLAS_LIBRARY "${_vw_cublas_first}" CACHE FILEPATH "cuBLAS library" FORCE)
      endif()
    endif()
    if(VWLMM_CUBLAS_INCLUDE_DIR AND VWLMM_CUBLAS_LIBRARY)
      set(_vw_cublas_lib "${VWLMM_CUBLAS_LIBRARY}")
      set(_vw_cublas_inc "${VWLMM_CUBLAS_INCLUDE_DIR}")
      set(_vw_cublas_from "VWLMM_CUBLAS_ROOT=${_vw_cublas_root}")
    else()
      message(STATUS "vwlmm: VWLMM_CUBLAS_ROOT=${_vw_cublas_root} has no include/cublas_v2.h + lib/libcublas.so*; trying the CUDA toolkit")
    endif()
  endif()
  if(NOT _vw_cublas_lib AND TARGET CUDA::cublas)
    get_target_property(_vw_tk_cublas CUDA::cublas IMPORTED_LOCATION)
    if(EXISTS "${CUDAToolkit_INCLUDE_DIRS}/cublas_v2.h" OR EXISTS "${CUDAToolkit_MATH_INCLUDE_DIR}/cublas_v2.h")
      set(_vw_cublas_lib "${_vw_tk_cublas}")
      set(_vw_cublas_from "the CUDA toolkit")
    endif()
  endif()
  if(NOT _vw_cublas_lib)
    set(_vw_cuda_skip "cuBLAS not found (set VWLMM_CUBLAS_ROOT to a folder with include/cublas_v2.h and lib/libcublas.so*, e.g. the nvidia-cublas wheel's nvidia/cu13, or install cuBLAS into the CUDA toolkit)")
  endif()
endif()

set(_vw_cuda_out "${CMAKE_LIBRARY_OUTPUT_DIRECTORY}")
if(NOT _vw_cuda_out)
  set(_vw_cuda_out "${CMAKE_BINARY_DIR}/Release")
endif()
set(_vw_cuda_out "${_vw_cuda_out}/cuda")
# Why there is no addon, for the runtime's message (src/native.ts tryCuda); gone once it builds.
if(_vw_cuda_skip)
  _vw_cuda_unavailable("${_vw_cuda_skip}")
  file(WRITE "${_vw_cuda_out}/NOT_BUILT.txt" "${_vw_cuda_skip}\n")
else()
  file(REMOVE "${_vw_cuda_out}/NOT_BUILT.txt")
  get_filename_component(_vw_cublas_dir "${_vw_cublas_lib}" DIRECTORY)

  file(GLOB VWLMM_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/native/cuda/*.cu ${CMAKE_SOURCE_DIR}/native/cuda/engine/*.cu
       ${CMAKE_SOURCE_DIR}/native/distributed/*.cu)
  add_library(vwlmm_cuda SHARED native/napi/addon_cuda.cc native/napi/buffer.cc native/napi/program.cc ${VWLMM_CUDA_SOURCES} ${CMAKE_JS_SRC})
  target_include_directories(vwlmm_cuda PRIVATE ${CMAKE_JS_INC} ${NODE_ADDON_API_DIR} ${CUDAToolkit_INCLUDE_DIRS})
  if(_vw_cublas_inc)
    # Before the toolkit's include dir, so a cuBLAS from VWLMM_CUBLAS_ROOT wins over a stale toolkit copy.
    target_include_directories(vwlmm_cuda BEFORE PRIVATE ${_vw_cublas_inc})
  endif()
  set_target_properties(vwlmm_cuda PROPERTIES
    PREFIX "" SUFFIX ".node"
    LIBRARY_OUTPUT_DIRECTORY "${_vw_cuda_out}"
    CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
    CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
    CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON
    CUDA_RUNTIME_LIBRARY Static
    ${VWLMM_HIDDEN_SYMBOLS}
    BUILD_RPATH "\$ORIGIN;${_vw_cublas_dir}"
    INSTALL_RPATH "\$ORIGIN;${_vw_cublas_dir}")
  target_compile_options(vwlmm_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-O2 -Wall -Wextra>
    $<$<COMPILE_LANGUAGE:CUDA>:-O3 -Xcompiler=-Wall,-Wextra>)
  # Static cudart, dynamic cuBLAS (it needs libcublasLt next to it at load time). cuBLASLt (matmul.cu's bias epilogue)
  # is not linked: the addon's cublasLt* symbols resolve through libcublas's own dependency on it, so a cuBLAS without
  # its libcublasLt still fails to load as libcublas's problem, with the reason src/native.ts gives.
  if(TARGET CUDA::cudart_static)
    target_link_libraries(vwlmm_cuda PRIVATE CUDA::cudart_static)
  endif()
  target_link_libraries(vwlmm_cuda PRIVATE "${_vw_cublas_lib}" ${CMAKE_JS_LIB})
  if(NOT APPLE)
    target_link_options(vwlmm_cuda PRIVATE -Wl,--exclude-libs,ALL)  # keep the static cudart's symbols private
  endif()
  # NCCL (data-parallel process groups): its header at build time from VWLMM_NCCL_ROOT (env or cache: the
  # nvidia-nccl wheel's nvidia/nccl, with include/nccl.h and lib/libnccl.so.2), the library dlopened at run time
  # (native/distributed/nccl_communicator.cu), so the addon never needs it to load.
  set(VWLMM_NCCL_ROOT "" CACHE PATH "NCCL folder with include/nccl.h (env VWLMM_NCCL_ROOT overrides)")
  if(NOT "$ENV{VWLMM_NCCL_ROOT}" STREQUAL "")
    set(VWLMM_NCCL_ROOT "$ENV{VWLMM_NCCL_ROOT}" CACHE PATH "NCCL folder with include/nccl.h (env VWLMM_NCCL_ROOT overrides)" FORCE)
  endif()
  unset(VWLMM_NCCL_INCLUDE_DIR CACHE)
  find_path(VWLMM_NCCL_INCLUDE_DIR nccl.h PATHS "${VWLMM_NCCL_ROOT}/include" ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
  if(VWLMM_NCCL_INCLUDE_DIR)
    target_include_directories(vwlmm_cuda PRIVATE ${VWLMM_NCCL_INCLUDE_DIR})
    target_compile_definitions(vwlmm_cuda PRIVATE VWLMM_HAVE_NCCL)
    if(VWLMM_NCCL_ROOT)
      target_compile_definitions(vwlmm_cuda PRIVATE VWLMM_NCCL_LIBDIR="${VWLMM_NCCL_ROOT}/lib")
    endif()
    set(_vw_nccl "NCCL header ${VWLMM_NCCL_INCLUDE_DIR}/nccl.h (library dlopened at run time)")
  else()
    set(_vw_nccl "no NCCL (no nccl.h: set VWLMM_NCCL_ROOT; process groups on the GPU say so)")
  endif()
  target_link_libraries(vwlmm_cuda PRIVATE ${CMAKE_DL_LIBS})
  message(STATUS "vwlmm: CUDA addon: ${_vw_nccl}")
  message(STATUS "vwlmm: CUDA addon built: ${_vw_cuda_out}/vwlmm_cuda.node (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, cuBLAS ${_vw_cublas_lib} from ${_vw_cublas_from})")
endif()
