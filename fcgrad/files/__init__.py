"""Files in and out: data files, atomic writes, the meta every output carries."""
