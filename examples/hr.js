// A directory_sync script (script = "file:/etc/yizhan/hr.js"): the seed's example (001,
// "(beta) 特殊逻辑脚本") completed into a whole script, as README.md shows it. Departments pass
// as proposed; a member is created once hired, with the department's name read through
// getObjectByID; members whose e-mail contains "tencent" are never updated.
if (context.data.type === "department") {
  return context;
}
// 获取到该人员的部门的部门名
context.data.departmentName = repo.getObjectByID(context.data.DeptID).name;
// 如果人员的雇佣日期在今天之前，创建人员
if (context.operationType === "CREATE") {
  if (context.data.hiredate - today() <= 0) {
    repo.executeCreate();
  } else {
    repo.abort();
  }
  return context;
}
// 如果人员的邮箱包含tencent，不进行更新操作
if (context.data.email.contain("tencent")) {
  repo.abort("UPDATE");
  return context;
}
return context;
